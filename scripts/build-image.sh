#!/usr/bin/env bash
# Build the Mesh LLM image for one backend with Docker where an engine runs, else podman
# (set up by scripts/podman-setup.sh). Layers are cached by content, so the llama.cpp stage
# is rebuilt only when its inputs change.  Usage: scripts/build-image.sh [cpu|cuda|rocm|vulkan]
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${1:-${BACKEND:-cpu}}
case "$BACKEND" in
  cpu|cuda|rocm|vulkan) ;;
  *) echo "unknown backend '$BACKEND': use cpu, cuda, rocm or vulkan" >&2; exit 2 ;;
esac
TAG=${MESH_IMAGE:-localhost/mesh-llm:$BACKEND}
engine=$(scripts/podman-setup.sh)
# host network: build steps resolve the package mirror the way this host does
args=(build --network host -f deploy/Dockerfile --build-arg "BACKEND=$BACKEND" -t "$TAG")
[[ $engine == podman ]] && args+=(--format docker)   # keeps HEALTHCHECK
# Inputs fetched here, with this machine's package index settings: the llama.cpp source and
# wheels of the project and its dependencies (the image's Debian Python is 3.11 as well).
inputs=.cache/image-inputs
mkdir -p "$inputs/wheels"
if ! ls "$inputs"/llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
  echo "fetching the llama.cpp source …" >&2
  python3 -m pip download --quiet --no-deps --no-binary :all: llama-cpp-python==0.3.36 \
    -d "$inputs" >&2
fi
echo "collecting wheels for the image …" >&2
rm -rf "$inputs/project" && mkdir -p "$inputs/project"
python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
  >"$inputs/requirements.txt"
cmp -s "$inputs/requirements.txt" "$inputs/wheels/requirements.txt" \
  || python3 -m pip wheel --quiet --disable-pip-version-check --wheel-dir "$inputs/wheels" \
       -r "$inputs/requirements.txt" >&2
mv "$inputs/requirements.txt" "$inputs/wheels/requirements.txt"
python3 -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$inputs/project" . >&2
case "$BACKEND" in
  cuda)   args+=(--build-arg BUILD_BASE=nvidia/cuda:12.6.3-devel-ubuntu24.04
                 --build-arg RUNTIME_BASE=nvidia/cuda:12.6.3-runtime-ubuntu24.04
                 --build-arg PIP_SOURCES=) ;;
  rocm)   args+=(--build-arg BUILD_BASE=rocm/dev-ubuntu-24.04:6.3-complete
                 --build-arg RUNTIME_BASE=rocm/dev-ubuntu-24.04:6.3
                 --build-arg PIP_SOURCES=) ;;
  *) ;;  # cpu, and vulkan with Debian's Vulkan packages, on the default bases
esac
echo "building $TAG with $engine …" >&2
"$engine" "${args[@]}" . >&2
echo "$TAG"
