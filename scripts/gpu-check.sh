#!/usr/bin/env bash
# On a machine with NVIDIA GPUs: build the pinned llama.cpp for CUDA (scripts/build-llama.sh),
# read the GPU inventory the way the worker does (NVML), serve a GGUF with every layer on the
# GPU, and serve it again through a ggml-rpc-server on the GPU (the pipeline-split path).
#   scripts/gpu-check.sh MODEL.gguf      (env: PYTHON, LLAMA_CUDA_ARCHITECTURES, JOBS)
# Prints one line per step and ends with a JSON summary; exits non-zero if a step fails.
set -uo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: scripts/gpu-check.sh MODEL.gguf}
PYTHON=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
WORK=${GPU_CHECK_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/mesh-gpu-check.XXXXXX")}   # logs kept there if set
mkdir -p "$WORK"
declare -A RESULT=()
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; [[ -n ${GPU_CHECK_LOGS:-} ]] || rm -rf "$WORK"' EXIT

step() { printf '\033[1m[gpu-check]\033[0m %s\n' "$*"; }
fail() { step "FAILED: $*"; RESULT[failed]=$*; summary; exit 1; }
summary() {
  local out="{" sep=""
  for k in "${!RESULT[@]}"; do out+="$sep\"$k\": \"${RESULT[$k]//\"/\'}\""; sep=", "; done
  echo "$out}"
}

step "GPU inventory through NVML (meshllm.worker.gpus)"
inventory=$("$PYTHON" - <<'PY'
from meshllm.worker.gpus import nvidia_devices
for d in nvidia_devices():
    print(f"{d.index} {d.name} | {d.uuid} | {d.pci_bus_id} | total {d.memory_total_bytes} free {d.memory_free_bytes}")
PY
) || fail "the NVML inventory could not be read"
[[ -n $inventory ]] || fail "NVML sees no GPU"
echo "$inventory"
RESULT[gpus]=$(wc -l <<<"$inventory")
RESULT[gpu0]=$(head -1 <<<"$inventory" | cut -d'|' -f1 | cut -d' ' -f2-)

step "building llama.cpp for CUDA"
started=$SECONDS
bash scripts/build-llama.sh cuda || fail "the CUDA build failed"
RESULT[build_s]=$((SECONDS - started))
BIN=${MESH_LLAMA_CACHE:-$HOME/.cache/mesh-llm/llama.cpp}/0.3.36-cuda/bin
"$BIN/llama-server" --version 2>&1 | head -2

serve() {  # serve NAME PORT ARGS...: start llama-server, wait for /health, one completion
  local name=$1 port=$2; shift 2
  "$BIN/llama-server" -m "$MODEL" --host 127.0.0.1 --port "$port" -c 2048 "$@" \
    >"$WORK/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 240); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    kill -0 "${pids[-1]}" 2>/dev/null || { tail -20 "$WORK/$name.log"; fail "$name: llama-server exited"; }
    sleep 0.5
  done
  curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
    -d '{"max_tokens": 64, "temperature": 0, "messages": [{"role": "user", "content": "Count to twenty."}]}' \
    >"$WORK/$name.json" || fail "$name: the completion failed"
  grep -iE "offload|using device|RPC0|CUDA0 model buffer" "$WORK/$name.log" | head -8
  RESULT[${name}_tokens_per_s]=$("$PYTHON" -c "import json,sys; print(round(json.load(open(sys.argv[1]))['timings']['predicted_per_second'], 1))" "$WORK/$name.json")
  RESULT[${name}_offload]=$(grep -oiE "offloaded [0-9]+/[0-9]+ layers to [A-Z]+" "$WORK/$name.log" | head -1)
  step "$name: ${RESULT[${name}_offload]:-no offload line}, ${RESULT[${name}_tokens_per_s]} tokens/s"
}

step "llama-server with every layer on GPU 0"
serve gpu 18080 -ngl 999
kill "${pids[-1]}"

step "llama-server driving a ggml-rpc-server on the GPU"
"$BIN/ggml-rpc-server" -H 127.0.0.1 -p 18052 >"$WORK/rpc-server.log" 2>&1 &
pids+=($!)
sleep 2
"$BIN/llama-server" --rpc 127.0.0.1:18052 --list-devices >"$WORK/devices.txt" 2>&1
cat "$WORK/devices.txt" | grep -E "^\s+\S+:" || true
rpc_device=$(grep -oE "^\s+RPC[^:]*" "$WORK/devices.txt" | head -1 | tr -d ' ')
[[ -n $rpc_device ]] || fail "llama-server lists no RPC device"
# flash attention off: over RPC, llama-server takes flash attention as supported, and the
# rpc-server's CUDA backend aborts (fattn.cu) on a head size it has no kernel for (32 in the
# generated test models), where a local GPU would have fallen back
serve rpc 18081 --rpc 127.0.0.1:18052 --device "$rpc_device" -ngl 999 --flash-attn off
RESULT[rpc_device]=$rpc_device
step "all steps passed"
summary
