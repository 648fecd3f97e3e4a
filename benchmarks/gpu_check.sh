#!/usr/bin/env bash
# The prepared GPU run of issue 4: one call of the device tool, about 8 minutes on an H200.
# Not yet run: no session so far was lent a GPU. From the repository root on the GPU machine
# (its python3 has torch and triton):
#     bash benchmarks/gpu_check.sh            # results land in $OUT (or benchmarks/results/gpu)
# 1. compiled Triton kernels vs the dense and tiled paths (values, gradients; fp32, bf16)
# 2. the loss benchmark on CUDA: fp32 N = 4,096 .. 65,536 against the plain version, lightly
#    and the matmul floor; bf16 N = 65,536 .. 1,048,576 for the tiled and Triton paths.
set -uo pipefail
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
python3 -c "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name())" | tee "$out/env.txt"
timeout 150 python3 benchmarks/gpu_parity.py --output "$out/gpu_parity.json" 2>&1 | tail -n 3
timeout 200 python3 benchmarks/losses.py --device cuda --sizes 4096 16384 65536 --tile 4096 \
    --impls floor plain contrastkit_dense contrastkit_tiled contrastkit_triton lightly \
    --output "$out/losses_cuda_fp32.json" 2>&1 | tail -n 6
timeout 200 python3 benchmarks/losses.py --device cuda --sizes 65536 262144 1048576 --tile 8192 \
    --repeats 2 --dtype bfloat16 --impls floor plain contrastkit_tiled contrastkit_triton \
    --output "$out/losses_cuda_bf16.json" 2>&1 | tail -n 6
