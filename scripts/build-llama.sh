#!/usr/bin/env bash
# Build the pinned llama.cpp (the source vendored in the llama-cpp-python sdist) once per
# version and backend, into ~/.cache/mesh-llm/llama.cpp/<version>-<backend>/bin.
# Usage: scripts/build-llama.sh [cpu|cuda|rocm|vulkan]   (env: BACKEND, JOBS, MESH_LLAMA_CACHE,
#   LLAMA_CUDA_ARCHITECTURES e.g. "90" to build CUDA kernels for one GPU generation only, which
#   is much faster than llama.cpp's default list)
set -euo pipefail

VERSION=0.3.36                      # llama-cpp-python sdist; vendor/llama.cpp is upstream 0c1e570
BACKEND=${1:-${BACKEND:-cpu}}
JOBS=${JOBS:-$(nproc)}
CACHE_ROOT=${MESH_LLAMA_CACHE:-$HOME/.cache/mesh-llm/llama.cpp}
PREFIX=$CACHE_ROOT/$VERSION-$BACKEND
TARGETS=(llama-server ggml-rpc-server llama-gguf-split llama-imatrix llama-perplexity llama-quantize)

say() { printf '\033[1m[llama.cpp]\033[0m %s\n' "$*"; }

# x86 CPU features to compile for: those this CPU has, or with LLAMA_CPU_PROFILE=portable (images
# for other machines) the x86-64-v3 set (AVX2, FMA, F16C, BMI2). Never AMX: its kernels die with
# SIGILL on quantized matmuls on CPUs that advertise it (docs/ARCHITECTURE.md, "llama.cpp build").
cpu_flags() {
  local have flags=()
  if [[ ${LLAMA_CPU_PROFILE:-native} == portable ]]; then
    have="flags : avx avx2 fma f16c bmi2"
  else
    have=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
  fi
  for f in avx avx2 fma f16c bmi2; do
    if grep -qw "$f" <<<"$have"; then flags+=("-DGGML_${f^^}=ON"); else flags+=("-DGGML_${f^^}=OFF"); fi
  done
  if grep -qw avx512f <<<"$have"; then flags+=(-DGGML_AVX512=ON); else flags+=(-DGGML_AVX512=OFF); fi
  flags+=(-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
  echo "${flags[@]}"
}

backend_flags() {
  case "$BACKEND" in
    cpu)    cpu_flags ;;
    cuda)   echo "-DGGML_CUDA=ON ${LLAMA_CUDA_ARCHITECTURES:+-DCMAKE_CUDA_ARCHITECTURES=$LLAMA_CUDA_ARCHITECTURES }$(cpu_flags)" ;;
    rocm)   echo "-DGGML_HIP=ON $(cpu_flags)" ;;
    vulkan) echo "-DGGML_VULKAN=ON $(cpu_flags)" ;;
    *) echo "unknown backend '$BACKEND': use cpu, cuda, rocm or vulkan" >&2; exit 2 ;;
  esac
}

# The mesh's own helper beside the binaries: fills an rpc-server's tensor cache from a GGUF
# (services/worker/rpc_cache.py). Rebuilt whenever its source is newer.
HELPER_SRC=$(cd "$(dirname "$0")/.." && pwd)/native/rpc_cache_fill.c
build_helper() {
  local out=$PREFIX/bin/mesh-rpc-cache-fill
  if [[ ! -x $out || $HELPER_SRC -nt $out ]]; then
    ${CC:-cc} -O2 -Wall -o "$out.tmp" "$HELPER_SRC" && mv "$out.tmp" "$out"
    say "built $out"
  fi
}

FLAGS=$(backend_flags)
STAMP="$VERSION $BACKEND $FLAGS"
have_targets() {
  local t
  for t in "${TARGETS[@]}"; do [[ -x $PREFIX/bin/$t ]] || return 1; done
}
if [[ -f $PREFIX/STAMP && "$(cat "$PREFIX/STAMP")" == "$STAMP" ]] && have_targets; then
  say "cached build found: $PREFIX/bin (delete it to rebuild)"
  build_helper
  exit 0
fi

tools=(cmake g++)
[[ -n ${LLAMA_SDIST:-} ]] || tools+=(python3)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "missing '$tool': install it (Debian: apt-get install cmake g++ python3)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mesh-llama.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SDIST=${LLAMA_SDIST:-}   # an already downloaded llama_cpp_python-$VERSION.tar.gz (image builds)
if [[ -z $SDIST ]]; then
  say "fetching llama-cpp-python==$VERSION source (for its vendored llama.cpp)"
  python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK"
  SDIST=$WORK/llama_cpp_python-$VERSION.tar.gz
fi
tar -xzf "$SDIST" -C "$WORK"
SRC=$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp

GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
say "configuring ($BACKEND): $FLAGS"
# shellcheck disable=SC2086
cmake -S "$SRC" -B "$WORK/build" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_RPC=ON \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF $FLAGS >"$WORK/configure.log" 2>&1 \
  || { tail -30 "$WORK/configure.log" >&2; exit 1; }
say "building ${TARGETS[*]} with $JOBS jobs (several minutes on 2 cores)"
cmake --build "$WORK/build" -j "$JOBS" --target "${TARGETS[@]}" 2>&1 | \
  grep --line-buffered -E '^\[[0-9]+/[0-9]+\]' | awk '{ printf "\r  %s", $1; fflush() } END { print "" }'
[[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "llama.cpp build failed" >&2; exit 1; }

rm -rf "$PREFIX.tmp" && mkdir -p "$PREFIX.tmp/bin" "$PREFIX.tmp/vocab"
for t in "${TARGETS[@]}"; do cp "$WORK/build/bin/$t" "$PREFIX.tmp/bin/"; done
cp "$SRC"/models/ggml-vocab-*.gguf "$PREFIX.tmp/vocab/"
echo "$STAMP" >"$PREFIX.tmp/STAMP"
rm -rf "$PREFIX" && mv "$PREFIX.tmp" "$PREFIX"
build_helper
say "installed into $PREFIX/bin"
