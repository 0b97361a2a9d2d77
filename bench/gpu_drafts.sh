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
source bench/gpu_setup.sh
[[ ${PREPARE_ONLY:-0} == 1 ]] && exit 0  # the build and the model, cached for the next run
for max in 0 16; do
  python3 bench/drafts.py --pairs agreeing --base "$MODEL" --gpu --threads 4 --tokens 128 \
    --draft-max "$max" --markdown | tee "$RESULTS/drafts-max-$max.md" || echo "drafts failed"
done
