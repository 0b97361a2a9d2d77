#!/bin/sh
# Runs one Mesh LLM service, configured by MESH_* variables:
#   gateway | scheduler | registry | worker   the service
#   serve ARGS...                            the all-in-one `mesh-llm serve`
#   etcd ARGS...                             the mesh's store
#   healthcheck                              probe whichever of those runs here
set -eu
command=${1:-serve}
[ $# -gt 0 ] && shift
case "$command" in
  gateway|scheduler|registry|worker) exec python3 -m "meshllm.$command" "$@" ;;
  serve|client|discover|inspect) exec mesh-llm "$command" "$@" ;;
  etcd) exec etcd "$@" ;;
  healthcheck)
    if [ "${MESH_HEALTHCHECK:-}" = etcd ]; then
      exec etcdctl --endpoints="http://127.0.0.1:${ETCD_CLIENT_PORT:-2379}" endpoint health
    fi
    exec python3 -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:${MESH_HTTP_PORT:-9337}/readyz', timeout=2).status == 200 else 1)" ;;
  *) exec "$command" "$@" ;;
esac
