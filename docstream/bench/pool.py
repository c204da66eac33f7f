"""Run benchmark cells in this process or in N worker processes, reporting each as it finishes.

Design choices:
- `jobs <= 1` runs the cells here, in order (one model load, no process start-up: what tests use).
- `jobs > 1` uses a `ProcessPoolExecutor` with the *spawn* start method (torch and fork do not mix). Each worker
  sets `torch.set_num_threads(max(1, cores // jobs))` so the workers share the cores instead of fighting over
  them, and loads its model once (engines are cached per process by `docstream.api.get_engine`).
- A cell function must be a module-level function taking one JSON-like dict and returning one; it should catch
  its own errors and return them in the dict, so one failed cell never loses a long run.
- Cells are submitted in the order given: callers put the most expensive cells first (longest-first balances
  the workers best).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    return max(1, cores() // max(1, jobs))


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_cells(fn: Callable[[dict], dict], specs: list[dict], jobs: int,
              on_done: Callable[[dict, dict], None]) -> None:
    """Call `fn(spec)` for every spec (in `jobs` worker processes if > 1); `on_done(spec, result)` as each ends."""
    if jobs <= 1:
        for spec in specs:
            on_done(spec, fn(spec))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ex = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads_per_job(jobs),))
    try:
        futures = {ex.submit(fn, spec): spec for spec in specs}
        for fut in as_completed(futures):
            on_done(futures[fut], fut.result())
    except BaseException:
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


class Progress:
    """One stderr line per finished cell: `[3/15] <label> (12.3 s; elapsed 0:01:40)`."""

    def __init__(self, total: int, out: Any = None):
        import sys

        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        self.out = out or sys.stderr

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def line(self, label: str, seconds: float) -> None:
        self.done += 1
        e = int(self.elapsed())
        print(f"[{self.done}/{self.total}] {label} ({seconds:.1f} s; elapsed {e // 3600}:{e % 3600 // 60:02d}:"
              f"{e % 60:02d})", file=self.out, flush=True)
