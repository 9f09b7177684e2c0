#!/usr/bin/env bash
# The speed figures that need a GPU, in one call of a few minutes (issues 18 and 13): where one guided step of the
# paper's configuration spends its time, that configuration eager (the UNet in NCHW, then channels-last) and compiled
# in fp32 and bf16 (the same run, so before and after compare), and Stable Diffusion 2 base beside it. Run from the
# repository root on the GPU machine:
#
#     bash benchmarks/gpu_speed.sh "$OUT"
#
# The machine needs diffusers and lpips; where they are missing, carry their wheels in wheels/ (ignored by git):
# here `pip download --no-deps -d wheels diffusers==0.42.1 lpips==0.1.4`, then the device tool's run with
# carry ["wheels"] and the command `bash benchmarks/gpu_speed.sh "$OUT"` (timeout 600 s).
set -euo pipefail
out=${1:?give the folder the figures go to}
mkdir -p "$out"
python3 -c "import diffusers, lpips" 2>/dev/null || python3 -m pip install --no-deps --no-index wheels/*.whl
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 benchmarks/profile_step.py --model paper --device cuda --out "$out/profile_step-paper"
python3 benchmarks/paper_config.py --device cuda --precisions no,bf16 --channels-last --compile --out "$out/paper_config"
python3 benchmarks/sd2_config.py --device cuda --out "$out/sd2_config"
