"""The typed messages of the extract pipeline: reader thread -> model thread -> writer thread, and
worker process -> parent. Each stage matches on the class, never on a position in a tuple."""
from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Tuple

from .jobs import Job

__all__ = ["InputStart", "Frame", "InputEnd", "InputError", "WriteStart", "WriteRgb", "PairId", "WriteFlows",
           "WriteFinish", "WriteAbort", "WorkerReady", "WorkerPairs", "WorkerResult", "WorkerFailed"]


# ---- reader -> model thread
@dataclasses.dataclass
class InputStart:
    job: Job
    frames: Optional[int]  # the container's or folder's count (None when unknown)


@dataclasses.dataclass
class Frame:
    job: Job
    index: int  # 0-based, in decoding order
    stem: str  # output name of a pair starting here (folders: the file name; videos: %05d from 1)
    image: Any  # (H, W, 3) uint8 at the target size


@dataclasses.dataclass
class InputEnd:
    job: Job
    frames: int
    size: Tuple[int, int]


@dataclasses.dataclass
class InputError:
    job: Job
    reason: str


# ---- model thread -> writer thread
@dataclasses.dataclass
class WriteStart:
    job: Job
    t0: float
    identity: Optional[dict]  # None: refused before it started (nothing written, nothing cleared)


@dataclasses.dataclass
class WriteRgb:
    job: Job
    index: int
    image: Any


@dataclasses.dataclass(frozen=True)
class PairId:
    index: int  # the pair's first frame
    stem: str


@dataclasses.dataclass
class WriteFlows:
    job: Job
    pairs: List[PairId]
    flows: Any  # (N, H, W, 2) float32


@dataclasses.dataclass
class WriteFinish:
    job: Job
    frames: int
    pairs: int
    size: Tuple[int, int]


@dataclasses.dataclass
class WriteAbort:
    job: Job
    reason: str


# ---- worker process -> parent (fastflow.extraction.pool / worker)
@dataclasses.dataclass
class WorkerReady:
    fastflow: str  # the folder of the fastflow package the worker imported


@dataclasses.dataclass
class WorkerPairs:
    n: int


@dataclasses.dataclass
class WorkerResult:
    result: dict


@dataclasses.dataclass
class WorkerFailed:
    reason: str  # the worker could not start (model, device)
