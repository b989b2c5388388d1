// Drives promsnmp's web console in headless Chromium (Debian's, through
// playwright-core): discovers a device through the discovery form, waits
// until the devices page shows it polled, changes its modules and checks
// them through the API, deletes it, and visits the fleet and settings
// pages. A screenshot of every step goes to SCREENSHOT_DIR.
//
// Environment: PROMSNMP_URL (the console), SNMP_PORT (the agent on
// 127.0.0.1), DEVICE_NAME (its sysName), SCREENSHOT_DIR, CHROMIUM
// (default /usr/bin/chromium), CONSOLE_USER / CONSOLE_PASSWORD (optional),
// EXPECT_MEMBERS (replicas the fleet page must list, default 1),
// EXPECT_FORBIDDEN (the user is no admin: every page's API call is refused),
// XSS_NAME (a device already stored under this markup-like name).
import { chromium } from 'playwright-core';

const base = process.env.PROMSNMP_URL;
const port = process.env.SNMP_PORT;
const name = process.env.DEVICE_NAME;
const shots = process.env.SCREENSHOT_DIR;
const credentials = process.env.CONSOLE_USER
  ? { username: process.env.CONSOLE_USER, password: process.env.CONSOLE_PASSWORD }
  : undefined;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // No sandbox as root; no background traffic (the network is closed).
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
const problems = [];
let page;
try {
  const context = await browser.newContext({ httpCredentials: credentials, viewport: { width: 1360, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(30000);
  page.on('dialog', (dialog) => dialog.accept());
  page.on('pageerror', (error) => problems.push('page error: ' + error.message));
  page.on('console', (message) => { if (message.type() === 'error') problems.push('console: ' + message.text()); });
  const shot = async (step) => {
    await page.screenshot({ path: `${shots}/${step}.png`, fullPage: true });
    console.log('step done:', step);
  };

  if (process.env.EXPECT_FORBIDDEN) {
    // A user without the admin role: the page loads, the API behind it refuses.
    await page.goto(base + '/#/devices');
    await page.waitForSelector('main .error');
    const listed = await page.textContent('main .error');
    if (!listed.includes('403')) throw new Error('devices page: ' + listed);
    await page.goto(base + '/#/discovery');
    await page.fill('input[name=targets]', '127.0.0.1');
    await page.fill('input[name=port]', port);
    await page.click('#discovery-form button[type=submit]');
    await page.waitForSelector('#job .error');
    const refused = await page.textContent('#job .error');
    if (!refused.includes('403')) throw new Error('discovery: ' + refused);
    await shot('forbidden');
    console.log('console e2e: refused as expected');
    await browser.close();
    process.exit(0);
  }

  // 1. Discovery through the form.
  await page.goto(base + '/#/discovery');
  await page.fill('input[name=targets]', '127.0.0.1');
  await page.fill('input[name=port]', port);
  await page.fill('input[name=readCommunity]', 'public');
  await page.fill('input[name=timeout]', '1000');
  await page.fill('input[name=retries]', '0');
  await page.click('#discovery-form button[type=submit]');
  await page.waitForSelector('#outcomes tr[data-outcome=found]');
  // The count of found devices follows once the device is saved.
  await page.waitForFunction(() => (document.querySelector('#job-counts') || {}).textContent?.includes('1 found'));
  await shot('1-discovery');

  // 2. The devices page shows it, polled (the page refreshes itself).
  await page.goto(base + '/#/devices');
  await page.waitForSelector(`tr[data-device="${name}"] .state.polled`);
  if (process.env.XSS_NAME) {
    // A device named like markup is shown as text, and runs nothing.
    const names = await page.$$eval('#devices td a', (links) => links.map((a) => a.textContent));
    if (!names.includes(process.env.XSS_NAME)) throw new Error('not shown as text: ' + JSON.stringify(names));
    await page.waitForTimeout(500);
    if (await page.evaluate(() => window.__xss !== undefined)) throw new Error('a device name ran as markup');
  }
  await page.fill('#device-search', name);
  await page.waitForSelector(`tr[data-device="${name}"]`);
  await shot('2-devices');

  // 3. Its page: series by module; change its modules to `system` only.
  await page.click(`tr[data-device="${name}"] a`);
  await page.waitForSelector('#modules-form');
  await page.waitForSelector('details.module');
  for (const box of await page.$$('#modules-form input[name=module]')) {
    const value = await box.getAttribute('value');
    if ((value === 'system') !== (await box.isChecked())) await box.click();
  }
  // Standalone this replica polls it; in a fleet the device's owner may be another.
  if (!process.env.EXPECT_MEMBERS || process.env.EXPECT_MEMBERS === '1') await page.waitForSelector('#poll-history tbody tr');
  await page.click('#modules-form button[type=submit]');
  await page.waitForSelector('#device-message.ok');
  const id = (await page.url()).split('/').pop();
  const stored = await (await page.request.get(base + '/promsnmp/inventory/devices/' + id)).json();
  if (JSON.stringify(stored.modules) !== '["system"]') throw new Error('modules after the change: ' + JSON.stringify(stored.modules));
  await shot('3-device');

  // 4. Fleet and settings pages.
  await page.goto(base + '/#/fleet');
  await page.waitForSelector('#fleet');
  await page.waitForSelector('#members tr[data-member]');
  const members = Number(process.env.EXPECT_MEMBERS || '1');
  await page.waitForFunction((n) => document.querySelectorAll('#members tr[data-member]').length === n, members);
  await shot('4-fleet');
  await page.goto(base + '/#/settings');
  await page.waitForSelector('#settings');
  await shot('5-settings');

  // The API page renders under the same content policy.
  await page.goto(base + '/swagger-ui.html');
  await page.waitForSelector('#scrapeOne');
  await shot('5b-api');

  // 5. Delete it: gone from the page and from the inventory.
  await page.goto(base + '/#/device/' + id);
  await page.click('#delete-device');
  await page.waitForURL(/#\/devices$/);
  await page.waitForSelector('#devices thead');
  await page.waitForFunction((n) => !document.querySelector(`tr[data-device="${n}"]`), name);
  const gone = await page.request.get(base + '/promsnmp/inventory/devices/' + id);
  if (gone.status() !== 404) throw new Error('deleted device answers ' + gone.status());
  await shot('6-deleted');
} catch (error) {
  // What the browser showed when it failed.
  if (page) await page.screenshot({ path: `${shots}/failure.png`, fullPage: true }).catch(() => {});
  throw error;
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log('console e2e: all steps passed');
