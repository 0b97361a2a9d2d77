#!/usr/bin/env bash
# Drafts on a machine with an NVIDIA GPU, in one go (the same setup as bench/gpu_split.sh:
# run bench/gpu_carry.sh first and follow its instructions): build the pinned llama.cpp for
# CUDA, make an 8B-shaped llama (random weights, Q4_K_M), then bench/drafts.py's agreeing pair
# made of it (its layers after the second add nothing; its first two draft), every layer on
# the GPU, at llama.cpp's default draft length and at 16. Results go to $RESULTS.
#   bench/gpu_drafts.sh  (env: LLAMA_SDIST, LLAMA_CUDA_ARCHITECTURES (90), JOBS, SHAPE,
#                         PREPARE_ONLY=1 to stop once the build and the model are there)
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-/tmp/gpu-results}
mkdir -p "$RESULTS"
export LLAMA_CUDA_ARCHITECTURES=${LLAMA_CUDA_ARCHITECTURES:-90} JOBS=${JOBS:-$(nproc)}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$RESULTS/gpu.txt"
start=$SECONDS
bash scripts/build-llama.sh cuda
echo "build: $((SECONDS - start)) s" | tee -a "$RESULTS/gpu.txt"
export MESH_LLAMA_BIN_DIR=${MESH_LLAMA_CACHE:-$HOME/.cache/mesh-llm/llama.cpp}/0.3.36-cuda/bin
MODEL=$(python3 -c "import sys; sys.path.insert(0, 'bench'); import pipeline_split as p
print(p.prepare_model(p.argparse.Namespace(model='', shape='${SHAPE:-8b}', quantize='Q4_K_M'), None))")
[[ ${PREPARE_ONLY:-0} == 1 ]] && exit 0  # the build and the model, cached for the next run
for max in 0 16; do
  python3 bench/drafts.py --pairs agreeing --base "$MODEL" --gpu --threads 4 --tokens 128 \
    --draft-max "$max" --markdown | tee "$RESULTS/drafts-max-$max.md" || echo "drafts failed"
done
