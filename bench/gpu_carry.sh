#!/usr/bin/env bash
# Prepare what a machine without internet needs to run bench/gpu_split.sh, in .gpu/ (ignored
# by git and by image builds): the pinned llama.cpp source trimmed to ~10 MB (no models but
# the llama-spm vocabulary, no docs, tests, examples or git history), the project's Python
# dependencies as wheels for CPython 3.12, and the Debian packages of stunnel and etcd.
# Then, on that machine, from the repository root:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl
#   mkdir -p /tmp/pkg /tmp/st && ln -sfn $PWD/services /tmp/pkg/meshllm
#   for f in .gpu/deb/*.deb; do dpkg -x $f /tmp/st; done
#   PYTHONPATH=/tmp/site:/tmp/pkg:$PWD/bench PATH=/tmp/st/usr/bin:$PATH \
#     LD_LIBRARY_PATH=/tmp/st/usr/lib/x86_64-linux-gnu:/tmp/st/lib/x86_64-linux-gnu \
#     LLAMA_SDIST=$PWD/.gpu/llama_cpp_python-0.3.36.tar.gz bench/gpu_split.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=.gpu
VERSION=0.3.36
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT/whl" "$OUT/deb"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK"
tar -xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
SRC=$WORK/llama_cpp_python-$VERSION
rm -rf "$SRC/.git" "$SRC/.github" "$SRC/docs" "$SRC/examples" "$SRC/tests" "$SRC/docker"
LL=$SRC/vendor/llama.cpp
find "$LL/models" -type f ! -name 'ggml-vocab-llama-spm.gguf' -delete
rm -rf "$LL/docs" "$LL/benches" "$LL/tests" "$LL/examples"/* \
  "$LL/ggml/src/ggml-hexagon" "$LL/ggml/src/ggml-sycl" "$LL/ggml/src/ggml-opencl"
tar -czf "$OUT/llama_cpp_python-$VERSION.tar.gz" -C "$WORK" "llama_cpp_python-$VERSION"

# the project's dependencies (resolved for CPython 3.12), uvloop for the tunnel's processes, and
# what the test harness imports (bench/gateway_overhead.py starts `mesh-llm serve` through it)
mapfile -t DEPS < <("$PY" -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')")
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_34_x86_64 --platform any \
  -d "$OUT/whl" "${DEPS[@]}" uvloop pytest httpx openai
rm -f "$OUT"/whl/numpy-*.whl  # the GPU machine's Python has numpy; the carry must stay < 64 MiB

(cd "$OUT/deb" && apt-get download stunnel4 libwrap0 libnsl2 libtirpc3 etcd-server >/dev/null)
du -sh "$OUT"
