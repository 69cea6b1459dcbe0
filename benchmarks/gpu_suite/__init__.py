"""The GPU suite (benchmarks/gpu_suite.sh -> benchmarks/suite.py -> here).

    table.py    the stages in order: name, function, (cap, floor) seconds, --quick or not, GPU only
    runner.py   the run: budget and timeouts, the record (rewritten after every stage), --redo,
                SIGTERM, the summary, the command line
    procs.py    subprocesses with logs and deadlines, and parsing their output
    stages/     build, smoke, tests (model/op/all tests), sanitizer, bench (bench, compile, layers)

Imported with benchmarks/ on sys.path (suite.py puts it there): the runner uses its siblings
merge_records and treehash.
"""
from .runner import Suite, main, parse_args
from .table import ALL, FULL, LIMITS, MARGIN, QUICK, STAGES, TABLE

__all__ = ["ALL", "FULL", "LIMITS", "MARGIN", "QUICK", "STAGES", "TABLE", "Suite", "main", "parse_args"]
