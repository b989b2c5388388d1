#!/bin/sh
# Deploys (or updates) the promsnmp stack on Docker Swarm:
#
#   ./swarm_deploy.sh [docker stack deploy options] STACK      (e.g. promsnmp)
#
# Swarm configs and secrets cannot change in place, so each is named by a
# digest of its file: an edited haproxy.cfg, prometheus.yml, rules file,
# web.yml or password file becomes a new config or secret and the services
# using it roll over to it. Configs and secrets no longer used stay until
# removed (`docker config ls`, `docker config rm`). Paths in the options
# (another -c file) are relative to this directory. The names start with
# promsnmp_ whatever the stack's name: one promsnmp stack per swarm.
set -eu
if [ $# = 0 ]; then
  echo "usage: $0 [docker stack deploy options] STACK" >&2
  exit 2
fi
cd "$(dirname "$0")"

digest() {
  [ -r "$1" ] || { echo "swarm_deploy.sh: cannot read $1" >&2; exit 1; }
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -c1-16
  else
    shasum -a 256 "$1" | cut -c1-16
  fi
}

HAPROXY_CFG_DIGEST=$(digest ../haproxy.cfg)
PROMETHEUS_YML_DIGEST=$(digest ./prometheus.yml)
PROMSNMP_RULES_DIGEST=$(digest ../alerts/promsnmp.rules.yml)
GRAFANA_DATASOURCE_DIGEST=$(digest ./grafana/provisioning/datasources/prometheus.yml)
GRAFANA_DASHBOARDS_DIGEST=$(digest ./grafana/provisioning/dashboards/promsnmp.yml)
GRAFANA_DASHBOARD_DIGEST=$(digest ./grafana/dashboards/promsnmp.json)
PROMSNMP_WEB_YML_DIGEST=$(digest "${PROMSNMP_WEB_CONFIG_SOURCE:-./web/web.yml.example}")
PROMSNMP_PROMETHEUS_PASSWORD_DIGEST=$(digest "${PROMSNMP_PROMETHEUS_PASSWORD_FILE:-./web/unset.password}")
export HAPROXY_CFG_DIGEST PROMETHEUS_YML_DIGEST PROMSNMP_RULES_DIGEST \
  GRAFANA_DATASOURCE_DIGEST GRAFANA_DASHBOARDS_DIGEST GRAFANA_DASHBOARD_DIGEST \
  PROMSNMP_WEB_YML_DIGEST PROMSNMP_PROMETHEUS_PASSWORD_DIGEST

exec docker stack deploy -c docker-stack.yml "$@"
