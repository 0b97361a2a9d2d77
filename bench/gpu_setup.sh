# Sourced by the GPU benchmarks (bench/gpu_split.sh, bench/gpu_drafts.sh): from the repository
# root, the pinned llama.cpp built for CUDA (cached) and found by the mesh's code, the GPU
# named in $RESULTS/gpu.txt, and $MODEL: the 8B-shaped llama (random weights, Q4_K_M; $SHAPE
# picks another of bench/pipeline_split.py's shapes), generated once and cached.
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
