#!/usr/bin/env bash
# The GPU suite: build, smoke, CUDA tests, compute-sanitizer, benchmarks -> one JSON record in OUTDIR
# (rewritten after every stage), suite_logs.tar.gz beside it, and the running stage's log.
#
#   benchmarks/gpu_suite.sh [OUTDIR] [--quick] [--budget SECONDS] [--stages a,b] [--compile] [--device cpu]
#
# OUTDIR defaults to $OUT if set, else benchmarks/results. Every option is benchmarks/suite.py's
# (`--help`); an option is never taken for OUTDIR. Without a GPU this is a dry run (exit 0 when
# its CPU code paths pass). Runs offline: the build uses the machine's torch, setuptools and
# pybind11 (no build isolation, PIP_BREAK_SYSTEM_PACKAGES=1, FASTFLOW_CUDA_ARCHS=90 unless set).
# Set FASTFLOW_COMMIT=<sha> when the tree has no .git (the device tool sends files only).
set -uo pipefail
PY=$(command -v python3 || command -v python) || { echo "gpu_suite: no python on PATH" >&2; exit 2; }
export PYTHONUNBUFFERED=1 PIP_BREAK_SYSTEM_PACKAGES=1
# no cd: a relative OUTDIR means the caller's folder (suite.py finds the tree from its own path)
exec "$PY" "$(dirname "$0")/suite.py" "$@"
