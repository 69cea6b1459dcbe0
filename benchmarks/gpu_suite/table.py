"""The stage table: what the suite runs, in order, with each stage's time limits. A stage is a function
``run(suite, deadline) -> (status, note, result)`` (status: passed, failed, timed out or skipped; note:
one line; result: what it measured) that the runner (runner.py) calls with a deadline carved from
the budget; it may also write its partial result into the record and save it while it runs."""
from typing import Callable, NamedTuple

from .stages import bench, build, sanitizer, smoke, tests


class Stage(NamedTuple):
    name: str
    run: Callable  # run(suite, deadline) -> (status, note, result)
    limits: tuple  # (cap, floor) seconds: the most it may take, the least worth starting it with
    about: str  # one line for --help
    when: str = "quick"  # "quick": every run; "full": not in --quick; "asked": only by --compile or --stages
    dry_run: bool = False  # runs (tiny, on the CPU) without a GPU; the other stages are skipped there


# In the order of what they verify per minute.
TABLE = (
    Stage("build", build.build, (300, 60),
          about="pip -v install for sm_90 (FASTFLOW_CUDA_ARCHS); kept when it matches csrc and setup.py"),
    Stage("smoke", smoke.smoke, (180, 30), dry_run=True,
          about="benchmarks/smoke_cuda.py: every op and layer shape, four precisions, then the model"),
    Stage("model_tests", tests.model_tests, (200, 40), dry_run=True,
          about="tests/test_model_cuda.py, measured errors printed (-rA)"),
    Stage("sanitizer", sanitizer.sanitizer, (200, 45),
          about="compute-sanitizer memcheck + racecheck on a small forward (+ initcheck, synccheck)"),
    Stage("op_tests", tests.op_tests, (300, 30),
          about="the CUDA op tests, one pytest per file (-m cuda), --maxfail, faulthandler_timeout"),
    Stage("bench", bench.bench, (240, 60), dry_run=True,
          about="fastflow in four precisions vs the reference and eager fp16, batch 1 and 16, 448x1024"),
    Stage("layers", bench.layers, (150, 30),
          about="per-layer fp16 table against cuDNN (benchmarks/bench_conv_layers.py)"),
    Stage("all_tests", tests.all_tests, (900, 120), when="full",
          about="the whole pytest suite"),
    Stage("compile", bench.torch_compile, (600, 150), when="asked",
          about="torch.compile max-autotune fp16, batch 1, 448x1024"),
)
STAGES = {s.name: s for s in TABLE}  # the runner looks each stage up here when it starts it
QUICK = tuple(s.name for s in TABLE if s.when == "quick")
FULL = tuple(s.name for s in TABLE if s.when in ("quick", "full"))
ALL = tuple(s.name for s in TABLE)
LIMITS = {s.name: s.limits for s in TABLE}  # (cap, floor) per stage, as the runner reads them
GPU_ONLY = tuple(s.name for s in TABLE if not s.dry_run)

MARGIN = 8  # seconds kept back at the end for the last record and archive
DRY_RUN_BUDGET = 230  # seconds: the most a run without a GPU takes
DRY_RUN_FLOORS = {"model_tests": 25, "bench": 30}  # their tiny CPU forms need less than on a GPU; above
# the 22 s a minimum budget (30 s less MARGIN) leaves, so a 30 s budget starts nothing (it started
# model_tests when the first stages took under 2 s)


def describe():
    """The stage list for --help."""
    mode = {"quick": "", "full": "  [not in --quick]", "asked": "  [only with --compile or --stages]"}
    return "\n".join(f"  {s.name:12} {s.about}{mode[s.when]}" for s in TABLE)
