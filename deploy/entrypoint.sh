#!/bin/sh
# Runs one Mesh LLM service, configured by MESH_* variables:
#   gateway | scheduler | registry | worker   the service (waits for $MESH_TLS_DIR/node.crt)
#   serve | client | authority | enrol ...   `mesh-llm` commands
#   etcd ARGS...                             the mesh's store (waits for $MESH_WAIT_FOR)
#   healthcheck                              probe whichever of those runs here
set -eu
command=${1:-serve}
[ $# -gt 0 ] && shift

# The authority (or the enrol container) writes the credentials a moment after the volume
# appears; podman-compose does not honour depends_on conditions, so wait here.
wait_for() {
  waited=0
  while [ ! -s "$1" ]; do
    if [ "$waited" -ge "${MESH_WAIT_S:-300}" ]; then
      echo "$command: $1 did not appear within ${MESH_WAIT_S:-300}s" >&2
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

case "$command" in
  gateway|scheduler|registry|worker)
    if [ -n "${MESH_TLS_DIR:-}" ]; then wait_for "$MESH_TLS_DIR/node.crt"; fi
    exec python3 -m "meshllm.$command" "$@" ;;
  serve|client|discover|inspect|invite|authority|enrol|credentials|members|revoke)
    exec mesh-llm "$command" "$@" ;;
  etcd)
    if [ -n "${MESH_WAIT_FOR:-}" ]; then wait_for "$MESH_WAIT_FOR"; fi
    exec etcd "$@" ;;
  healthcheck)
    if [ "${MESH_HEALTHCHECK:-}" = etcd ]; then
      tls=${MESH_ETCD_TLS_DIR:-/credentials/authority}
      exec etcdctl --endpoints="https://127.0.0.1:${ETCD_CLIENT_PORT:-2379}" \
        --cacert="$tls/ca.crt" --cert="$tls/node.crt" --key="$tls/node.key" endpoint health
    fi
    if [ "${MESH_HEALTHCHECK:-}" = authority ]; then
      exec python3 -c "import socket; socket.create_connection(('127.0.0.1', ${MESH_AUTHORITY_PORT:-9339}), 2)"
    fi
    exec python3 -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:${MESH_HTTP_PORT:-9337}/readyz', timeout=2).status == 200 else 1)" ;;
  *) exec "$command" "$@" ;;
esac
