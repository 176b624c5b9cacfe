#!/usr/bin/env bash
# The device part of a lent GPU session, as one `run` call from the project root with `.whl` carried:
#   here:  .venv/bin/python bench/gpu_wheels.py download .whl
#   run:   bash bench/gpu_run.sh [gpu_check options]        (timeout_s about 540: gpu_check takes about 6-7 minutes, estimated)
# Installs the wheels the machine lacks into /tmp/site, then runs bench/gpu_check.py with its figures under $OUT:
# setup.log (the machine, its packages), gpu_check.json and gpu_check.log (saved after each part, so a time limit keeps
# what was measured) and stdout.log (everything as it was printed). PYTHON (python3), WHEELS (.whl) and SITE (/tmp/site) may be set
# (tests/test_gpu_check.py runs this on the CPU, in a simulated lent machine).
set -uo pipefail
out=${OUT:-gpu_check}; py=${PYTHON:-python3}; wheels=${WHEELS:-.whl}; site=${SITE:-/tmp/site}
mkdir -p "$out"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; "$py" --version
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
  "$py" bench/gpu_wheels.py install "$wheels" "$site"; } > "$out/setup.log" 2>&1
rc=$?
cat "$out/setup.log"
if [ $rc -ne 0 ]; then echo "[gpu_run] setting up failed (exit $rc): see setup.log"; exit $rc; fi
export PYTHONPATH=$site:$PWD
"$py" bench/gpu_check.py --out "$out" "$@" 2>&1 | tee "$out/stdout.log"
exit "${PIPESTATUS[0]}"
