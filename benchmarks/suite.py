"""The GPU suite's entry point (benchmarks/gpu_suite.sh execs this file; ``--help`` for the options).

    python benchmarks/suite.py [OUTDIR] [--quick] [--budget SECONDS] [--stages a,b] [--compile]

The suite itself is the package benchmarks/gpu_suite/: the stage table (table.py), the runner with
the record and --redo (runner.py), one module per stage or group of stages (stages/).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # gpu_suite and its siblings, from any cwd

from gpu_suite import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
