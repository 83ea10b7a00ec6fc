#!/usr/bin/env bash
# The GPU check: on a CUDA machine, installs .gpu/'s wheel and runs the CUDA tests, bench and suite.
#
# Prepare here with `make gpu-bundle` (a wheel for the torch the GPU machine has; rerun it after
# every change), then run this there from the repository root, with `.gpu` carried along. Logs,
# the benchmark's JSON/Markdown and a summary go to $OUT (default /tmp/gpu-check): 7 files in one
# folder. Every step runs under its own time limit and the script goes on after a failing step,
# so one call answers everything; the exit status is that of the first failing step. The limits
# (the header's 60 s included) add up to 560 s, inside one 600 s device command; a typical run
# takes 3 to 5 minutes. The machine must have pytest, pytest-timeout and hypothesis.
# BENCH_ARGS goes to the benchmark (default --no-memory: the memory children take 2-3 minutes).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
mkdir -p "$OUT"
status=0

step() {  # step NAME SECONDS LOG COMMAND...: run COMMAND, record its outcome in summary.txt
    local name=$1 seconds=$2 log=$3 start rc
    shift 3
    start=$(date +%s)
    timeout --kill-after=10 "$seconds" "$@" >"$OUT/$log" 2>&1
    rc=$?
    printf '%-10s rc=%-3s %4ss  %s\n' "$name" "$rc" "$(($(date +%s) - start))" \
        "$(tail -n 1 "$OUT/$log")" | tee -a "$OUT/summary.txt"
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
}

: >"$OUT/summary.txt"
{
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    fi
    timeout 60 "$PYTHON" - <<'PY'
import platform, sys, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("devices", torch.cuda.device_count(),
      [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
PY
} 2>&1 | tee -a "$OUT/summary.txt"

wheels=(.gpu/jacobian_reg-*.whl)
if [ ! -f "${wheels[0]}" ]; then
    echo "no wheel in .gpu/: run \`make gpu-bundle\` here and carry .gpu" | tee -a "$OUT/summary.txt"
    exit 2
fi
# The machine has no package registry: the wheel's own torch pin is checked at import instead.
step install 40 install.log bash -c '"$0" -m pip install --no-index --no-deps --force-reinstall \
    --disable-pip-version-check "${@}" && "$0" -c "import torch, jacobian
print(\"jacobian\", jacobian.__version__, \"on torch\", torch.__version__)"' "$PYTHON" "${wheels[@]}"
if [ "$status" -ne 0 ]; then exit "$status"; fi

if ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "torch sees no CUDA device" | tee -a "$OUT/summary.txt"
    [ "${ALLOW_CPU:-0}" = 1 ] || exit 3
fi

# The CUDA cases (the `cuda` marker) first: the reason this script exists. -rs lists why anything
# was skipped; --timeout makes a hung test (a deadlock, say) fail alone instead of taking the
# step's summary.
step cuda 120 cuda.log "$PYTHON" -m pytest -p no:cacheprovider -rs -v --timeout=60 -m cuda tests
# shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
step bench 160 bench.log "$PYTHON" -m benchmarks --out "$OUT" ${BENCH_ARGS---no-memory}
# The rest of the suite on this machine's torch and Python (the 2000-example fuzz left out, and
# the build tests, which need cargo, a C++ compiler and crates.io).
step suite 180 suite.log "$PYTHON" -m pytest -p no:cacheprovider -q --timeout=120 \
    -m "not cuda and not slow and not build" tests
exit "$status"
