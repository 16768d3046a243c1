#!/usr/bin/env bash
# The device check: CUDA tests, GPU step ratios, and a short search on the GPU.
# Run on a machine with a CUDA device and PyTorch; packages it lacks may come as wheels in .whl/.
# Writes its logs and JSON under ${OUT:-/tmp/gpu_check}.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site" || exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__)" | tee -a "$OUT/device.txt"
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/train/test_metrics.py tests/optim 2>&1 | tail -25 | tee "$OUT/pytest.txt"
timeout 200 python3 benchmarks/gpu_steps.py --out "$OUT/gpu_steps.json" 2>&1 | tail -8
timeout 120 python3 -m samtune.cli search --data builtin:digits --trials 8 --epochs 4 --confirm-seeds 2 \
  --storage "sqlite:////tmp/gpu_search.db" --out /tmp/gpu_rec 2>&1 | tail -15 | tee "$OUT/search.txt"
