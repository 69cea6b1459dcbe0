#!/usr/bin/env bash
# The GPU suite: build, CUDA tests, compute-sanitizer on a small forward, benchmarks -> one JSON
# record (DESIGN.md section 8) plus suite_logs.tar.gz in OUTDIR (default: $OUT if set, else
# benchmarks/results). Logs and per-stage parts live in $FASTFLOW_SUITE_WORK (/tmp/fastflow_suite).
#
#   benchmarks/gpu_suite.sh [OUTDIR] [suite.py options, e.g. --stages tests,sanitizer --compile]
#
# Runs offline: the build uses the machine's torch/setuptools/pybind11 (no build isolation).
# Set FASTFLOW_COMMIT=<sha> when the tree has no .git (the device tool sends files only).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR="${1:-${OUT:-benchmarks/results}}"
shift || true
WORK="${FASTFLOW_SUITE_WORK:-/tmp/fastflow_suite}"
export FASTFLOW_SUITE_WORK="$WORK"
mkdir -p "$OUTDIR" "$WORK"
export PYTHONUNBUFFERED=1
start=$(date +%s)
echo "== build ($(nvcc --version | tail -1))"
if ! FASTFLOW_CUDA_ARCHS="${FASTFLOW_CUDA_ARCHS:-90}" pip install --no-build-isolation --no-deps . > "$WORK/build.log" 2>&1; then
    tail -40 "$WORK/build.log"
    echo "gpu_suite: build failed"
    exit 1
fi
grep -E "fastflow build|warning" "$WORK/build.log" | head -20
(cd /tmp && python -c "import fastflow, json; print(json.dumps(fastflow.build_info()))") 2>&1 | tail -1
echo "== suite"
python benchmarks/suite.py --out "$OUTDIR" "$@"
rc=$?
echo "gpu_suite: $(( $(date +%s) - start )) s, rc=$rc"
exit $rc
