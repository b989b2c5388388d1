// Renders /v3/api-docs as the readable page /swagger-ui.html; every text
// from the document is escaped.
'use strict';
(async function () {
  const escape = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
  const response = await fetch('v3/api-docs', {credentials: 'same-origin'});
  if (!response.ok) {
    document.getElementById('about').textContent = 'Cannot load /v3/api-docs: ' + response.status;
    return;
  }
  const doc = await response.json();
  document.getElementById('about').innerHTML = escape(doc.info.description) +
    ' <span class="muted">Version ' + escape(doc.info.version) + ', OpenAPI ' + escape(doc.openapi) +
    ' — <a href="v3/api-docs">JSON</a>.</span>';
  const refName = (schema) => schema && schema.$ref ? schema.$ref.split('/').pop() : null;
  const typeOf = (schema) => {
    if (!schema) return '';
    if (schema.$ref) return '<a href="#schema-' + escape(refName(schema)) + '">' + escape(refName(schema)) + '</a>';
    if (schema.type === 'array') return 'array of ' + typeOf(schema.items);
    if (schema.allOf) return schema.allOf.map(typeOf).join(' & ');
    return escape(schema.type || 'object') + (schema.enum ? ' (' + schema.enum.map(escape).join(', ') + ')' : '');
  };
  const byTag = {};
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of ['get', 'put', 'post', 'patch', 'delete']) {
      const op = item[method];
      if (!op) continue;
      const tag = (op.tags || ['other'])[0];
      (byTag[tag] = byTag[tag] || []).push({path, method, op, shared: item.parameters || []});
    }
  }
  let html = '';
  for (const tag of doc.tags.map((t) => t.name).concat(Object.keys(byTag).filter((t) => !doc.tags.some((d) => d.name === t)))) {
    if (!byTag[tag]) continue;
    const about = (doc.tags.find((t) => t.name === tag) || {}).description || '';
    html += '<h2>' + escape(tag) + ' <span class="muted">' + escape(about) + '</span></h2>';
    for (const {path, method, op, shared} of byTag[tag]) {
      html += '<div class="op" id="' + escape(op.operationId) + '"><span class="method ' + method + '">' + method.toUpperCase() +
        '</span> <span class="path">' + escape(path) + '</span> — ' + escape(op.summary);
      if (op.description) html += '<div class="muted">' + escape(op.description) + '</div>';
      const params = shared.concat(op.parameters || []).map((p) => p.$ref ? doc.components.parameters[refName(p)] : p);
      if (params.length) {
        html += '<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>' + params.map((p) =>
          '<tr><td><code>' + escape(p.name) + '</code>' + (p.required ? ' *' : '') + '</td><td>' + escape(p.in) +
          '</td><td>' + typeOf(p.schema) + '</td><td class="muted">' + escape(p.description) + '</td></tr>').join('') + '</table>';
      }
      if (op.requestBody) {
        const body = Object.entries(op.requestBody.content)[0];
        html += '<div>Body: <code>' + escape(body[0]) + '</code> ' + typeOf(body[1].schema) + '</div>';
      }
      html += '<div class="muted">Answers: ' + Object.entries(op.responses).map(([code, r]) =>
        '<code>' + escape(code) + '</code>' + (r.$ref ? '' : ' ' + escape(r.description))).join(', ') +
        (op.security && op.security.length === 0 ? ' — no authentication' : '') + '</div></div>';
    }
  }
  document.getElementById('operations').innerHTML = html;
  document.getElementById('schemas').innerHTML = Object.entries(doc.components.schemas).map(([name, schema]) =>
    '<div class="op" id="schema-' + escape(name) + '"><b>' + escape(name) + '</b><table>' +
    Object.entries(schema.properties || {}).map(([field, s]) => '<tr><td><code>' + escape(field) + '</code>' +
      ((schema.required || []).includes(field) ? ' *' : '') + '</td><td>' + typeOf(s) + '</td><td class="muted">' +
      escape(s.description) + '</td></tr>').join('') + '</table></div>').join('');
})();
