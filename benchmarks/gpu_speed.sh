#!/usr/bin/env bash
# The speed figures that need a GPU, in one run of a few minutes: where one guided step of the paper's
# configuration spends its time, that configuration eager (the UNet in NCHW, then channels-last) and compiled in
# fp32 and bf16 (the same run, so before and after compare), and Stable Diffusion 2 base beside it. Run from the
# repository root on a machine with a CUDA GPU:
#
#     bash benchmarks/gpu_speed.sh OUT_DIR
#
# The machine needs diffusers and lpips; on one without a package index, put their wheels in wheels/ (ignored by
# git; `pip download --no-deps -d wheels diffusers==0.42.1 lpips==0.1.4` where there is one) and the script
# installs them from there.
set -euo pipefail
out=${1:?give the folder the figures go to}
mkdir -p "$out"
python3 -c "import diffusers, lpips" 2>/dev/null || python3 -m pip install --no-deps --no-index wheels/*.whl
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 benchmarks/profile_step.py --model paper --device cuda --out "$out/profile_step-paper"
python3 benchmarks/paper_config.py --device cuda --precisions no,bf16 --channels-last --compile --out "$out/paper_config"
python3 benchmarks/sd2_config.py --device cuda --out "$out/sd2_config"
