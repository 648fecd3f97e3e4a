#!/usr/bin/env bash
# The prepared GPU run of issues 5 and 6: seconds per training epoch of every sequential
# recommender (Beauty, Toys, LastFM) and graph recommender (Gowalla) on one GPU, about 4 minutes
# on an H200. Not yet run: no session so far was lent a GPU.
#
# The data and lightning-fabric (absent from the GPU image) travel in two ignored folders,
# prepared once on this machine:
#     bash benchmarks/gpu_recsys.sh --prepare
# then one call of the device tool, carrying both folders:
#     run(command="bash benchmarks/gpu_recsys.sh", carry=[".gpu_data", ".whl"], timeout_s=420)
# $OUT gets back seqrec_timing.json and graph_timing.json: this tree's CPU records plus the new
# GPU ones (the kind of device is part of a timing's identity), to copy over benchmarks/results/.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
    data="${CONTRASTKIT_DATA:-../shared/data}"
    mkdir -p .gpu_data .whl
    for d in amazon_beauty amazon_toys lastfm_seqrec lightgcn_gowalla; do cp -r "$data/$d" .gpu_data/; done
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 -d .whl lightning-fabric==2.6.6
    grep -qx '/.gpu_data/' .git/info/exclude 2>/dev/null || echo '/.gpu_data/' >> .git/info/exclude
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    du -sh .gpu_data .whl
    exit 0
fi
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1 CONTRASTKIT_DATA="$PWD/.gpu_data"
if ! python3 -c "import lightning_fabric" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site" || exit 1
fi
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" | tee "$out/env_recsys.txt"
timeout 200 python3 benchmarks/seqrec.py --timing 20 --device cuda --datasets beauty toys lastfm \
    2>&1 | tee "$out/seqrec_timing.log" | tail -n 15
timeout 150 python3 benchmarks/graph.py --timing 5 --device cuda 2>&1 \
    | tee "$out/graph_timing.log" | tail -n 6
cp benchmarks/results/seqrec_timing.json benchmarks/results/graph_timing.json "$out"/
