"""Progress on stderr with tqdm: a bar of inputs (the current input and pairs/s beside it) on a
terminal, and one line per finished input (also when stderr is not a terminal)."""
from __future__ import annotations

import sys
import threading
import time
from typing import Optional

from .jobs import Job

__all__ = ["Progress"]


class Progress:
    def __init__(self, total_inputs: int, step: int, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.enabled, self.step = enabled, step
        tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.pairs = 0
        self.current: Optional[str] = None
        self.current_pairs = 0
        self.current_total: Optional[int] = None
        self.t0 = time.perf_counter()
        self.lock = threading.Lock()
        self.bar = None
        if tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total_inputs, unit="input", file=self.stream, dynamic_ncols=True, leave=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} inputs{postfix}")

    def _postfix(self) -> None:
        if self.bar is None:
            return
        rate = self.pairs / max(1e-9, time.perf_counter() - self.t0)
        cur = ""
        if self.current is not None:
            tot = f"/{self.current_total}" if self.current_total else ""
            cur = f" | {self.current} {self.current_pairs}{tot} pairs"
        self.bar.set_postfix_str(f"{cur} | {self.pairs} pairs, {rate:.1f} pairs/s", refresh=True)

    def start_input(self, job: Job, frames: Optional[int]) -> None:
        with self.lock:
            self.current, self.current_pairs = job.name, 0
            self.current_total = frames - self.step if frames and frames > self.step else None
            self._postfix()

    def add_pairs(self, n: int) -> None:
        with self.lock:
            self.pairs += n
            self.current_pairs += n
            self._postfix()

    def input_done(self, res: dict) -> None:
        with self.lock:
            if res["name"] == self.current:
                self.current = None
            if not self.enabled:
                return
            what = res["status"] + (f": {res['reason']}" if res.get("reason") else "")
            line = f"{res['input']}: {what}"
            if self.bar is not None:
                self.bar.write(line, file=self.stream)
                self.bar.update(1)
                self._postfix()
            else:
                self.stream.write(line + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
