#!/usr/bin/env bash
# Every GPU check of a device session, in one call: run from the repository root on
# a CUDA machine where skvae and its test extras import (a device machine lacks
# skorch: carry its wheel, see /work/.library/device/README.md), with OUT set to a
# folder whose files come back. Then, on a machine without CUDA:
#     python benchmarks/check_gpu_pickle.py load OUT/pkl
# The last run's numbers are in benchmarks/README.md ("Latest GPU run"). About 7
# minutes on an H200; each step has its own time limit, so one that hangs leaves
# the others their time.
set -u
OUT=${OUT:-/tmp/skvae-gpu}
mkdir -p "$OUT/pkl"
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch, sklearn, skorch; print('torch', torch.__version__, 'scikit-learn',
sklearn.__version__, 'skorch', skorch.__version__)"

echo "== fitted on the GPU, pickled for a CPU-only machine (complete data and data with NaN)"
timeout 150 python3 benchmarks/check_gpu_pickle.py save "$OUT/pkl"

echo "== VAEImputer on CUDA: fit seconds and errors (compare with the CPU table)"
timeout 150 python3 benchmarks/bench_imputation.py --only breast_cancer,digits \
    --patterns mcar20 --methods vae --seeds 1 --n-jobs 1 --params '{"device": "cuda"}'

echo "== the test suite, where device='auto' trains on CUDA"
timeout 240 python3 -m pytest -n 12 -q -p no:cacheprovider --maxfail=40 -rfE tests 2>&1 \
    | tail -45

echo "== training speed against hand-written loops on the GPU"
timeout 150 python3 benchmarks/bench_training.py --device cuda --digits-epochs 10 --epochs 2 \
    > "$OUT/bench_training_cuda.md" 2>&1
echo "rc=$?"
tail -14 "$OUT/bench_training_cuda.md"
