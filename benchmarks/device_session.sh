#!/usr/bin/env bash
# One GPU session's measurements in one command, sized for the device tool's 10-minute call (the
# workplace's device machine has torch, triton and cupy but reaches no package registry). Run it from the
# repository root; everything it writes goes under $OUT (default ./device-out):
#
#   OUT=$OUT bash benchmarks/device_session.sh            # on the device machine
#
# Stages, each under its own time limit so one slow stage cannot eat the call (seconds, in brackets):
#   install      attnsim itself, editable, without dependencies or a build environment (nothing to fetch) [60]
#   device       nvidia-smi -q (the card, its clocks, driver), torch/triton/cupy versions            [20]
#   tests        the Triton kernels against float64 on the GPU (tests/test_triton_kernels.py)      [120]
#   validate     `attnsim validate --suite quick`: ceilings, SDPA flash and cuDNN, attnsim's kernels,
#                one JSON Lines record each (resumable: a second run continues it)                  [230]
#   kernels      benchmarks/bench_kernels.py: attnsim's kernels against SDPA's backends              [90]
#   ceilings     benchmarks/bench_ceilings.py: matmul, copy, exp and L2 micro-benchmarks             [60]
# The limits add up to 580 s, inside the 600 s a device call may run (give the call timeout_s=600).
# A stage that fails or times out is logged (its log and rc under $OUT) and the next one runs. Without a
# GPU every measuring stage says "no GPU" and writes nothing. Afterwards, on the development machine: copy
# the .jsonl files to validation/measurements/<device>/ and fit them (`attnsim calibrate FILE -o ...`).
set -u
OUT=${OUT:-device-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"

stage() {  # stage NAME LIMIT COMMAND...: run COMMAND under LIMIT seconds, log to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$rc" > "$OUT/$name.rc"
    printf '%-9s rc=%-3s %4ss  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$(tail -n 1 "$OUT/$name.log")"
}

stage install 60 "$PY" -m pip install -q --no-deps --no-build-isolation -e .
stage device 20 bash -c "nvidia-smi -q; $PY -c 'import torch, triton; print(torch.__version__, triton.__version__, torch.version.cuda)'; $PY -c 'import cupy; print(cupy.__version__)'"
stage tests 120 "$PY" -m pytest -q -x -p no:cacheprovider tests/test_triton_kernels.py
stage validate 230 "$PY" -c "from attnsim.cli import main; main()" validate --suite quick -o "$OUT/validate.jsonl"
stage kernels 90 "$PY" benchmarks/bench_kernels.py --out "$OUT/kernels.jsonl"
stage ceilings 60 "$PY" benchmarks/bench_ceilings.py --out "$OUT/ceilings.jsonl"
