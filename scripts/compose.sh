#!/usr/bin/env bash
# The compose stack with `docker compose` where a Docker engine runs, else with podman and
# podman-compose (set up on first use).
#   scripts/compose.sh up      start deploy/docker-compose.yml and wait until a model answers
#   scripts/compose.sh ARGS…   any other compose command (down, logs, ps …)
# MESH_COMPOSE_FILES (default docker-compose.yml) names other files under deploy/, e.g.
# "docker-compose.join.yml" on a box that joins another.
set -euo pipefail
cd "$(dirname "$0")/.."
engine=$(scripts/podman-setup.sh)
if [[ $engine == docker ]]; then compose=(docker compose); else
  compose=("$(scripts/deploy-tools.sh)/podman-compose"); fi
for file in ${MESH_COMPOSE_FILES:-docker-compose.yml}; do compose+=(-f "deploy/$file"); done
if [[ ${1:-} != up ]]; then exec "${compose[@]}" "$@"; fi
shift
echo "starting the stack with $engine …" >&2
# podman without systemd cannot schedule healthchecks on a timer (`podman healthcheck run`
# still runs them); its complaint about that is noise here
"${compose[@]}" up -d "$@" 2> >(grep -v 'systemd connection' >&2)
api="http://localhost:${MESH_PORT:-9337}/v1"
printf 'waiting for a model to be served at %s ' "$api" >&2
for _ in $(seq 1 300); do
  if curl -sf "$api/models" 2>/dev/null | grep -q '"id"'; then
    echo " ready" >&2
    echo "API: $api   console: http://localhost:${MESH_CONSOLE_PORT:-3131}" >&2
    exit 0
  fi
  printf . >&2; sleep 1
done
echo " no model after 300 s; see: scripts/compose.sh logs" >&2
exit 1
