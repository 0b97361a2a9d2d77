#!/usr/bin/env bash
# Pipeline-split figures on a machine with an NVIDIA GPU, in one go: build the pinned llama.cpp
# for CUDA, then the tunnel's round-trip cost (bench/tunnel_rtt.py) and an 8B-shaped llama
# (random weights, Q4_K_M) solo against split through the mesh's launch code and tunnel
# (bench/pipeline_split.py --gpu) with flash attention as the mesh sets it, then off and on
# everywhere alike (FLASH_ATTN picks); then what the gateway costs with llama-server on the GPU (bench/gateway_overhead.py). Results go to
# $RESULTS (default /tmp/gpu-results).
#   bench/gpu_split.sh            (env: LLAMA_SDIST, LLAMA_CUDA_ARCHITECTURES (90), JOBS, SHAPE)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/gpu_setup.sh
[[ ${TUNNEL_RTT:-1} == 1 ]] && { python3 bench/tunnel_rtt.py --round-trips 5000 --markdown | tee "$RESULTS/tunnel.md" || echo "tunnel_rtt failed"; }
SPLIT=(--gpu --concurrency 1,8 --max-tokens 128 --rounds 3 --requests 2 --threads 4 --markdown)
for fa in ${FLASH_ATTN:-mesh off on}; do  # as the mesh runs it; then every side alike
  python3 bench/pipeline_split.py --model "$MODEL" --flash-attn "$fa" "${SPLIT[@]}" \
    | tee "$RESULTS/split-fa-$fa.md" || echo "split with --flash-attn $fa failed"
done
python3 bench/gateway_overhead.py --model "$MODEL" --concurrency 1,8,32 --threads 4 --markdown \
  | tee "$RESULTS/gateway.md" || echo "gateway_overhead failed"
