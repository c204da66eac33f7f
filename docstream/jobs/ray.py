"""The Ray executor: one Ray task per document, each running the same per-document pipeline as the local one.

Design choices:
- The pipeline is passed in (`batch._run_jobs`), so this module knows nothing of results or specs and Ray
  pickles the function by reference; a worker that dies (OOM, a lost node) yields `failed(path, error)`.
- Workers get the environment that finds models and indexes as the driver does (`DOCSTREAM_HOME`, …).
- A Ray runtime started here is shut down when the iterator ends; pending tasks are cancelled on exit.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import BackendError, error_line
from ..paths import home


def _ray_task(path: str, spec: Any, pipeline: Callable[..., Iterator[Any]]) -> Any:
    """One Ray task: the pipeline for one document."""
    return next(pipeline([path], spec, progress=False))


def _ray_env() -> dict[str, str]:
    """Environment the Ray workers need to find models and indexes like the driver does."""
    env = {k: os.environ[k] for k in ("DOCSTREAM_HOME", "HF_HUB_OFFLINE", "HF_HOME", "DOCSTREAM_BASE_URL",
                                       "OPENAI_API_KEY") if os.environ.get(k)}
    env.setdefault("DOCSTREAM_HOME", str(home()))
    return env


def run_ray(paths: list[str], spec: Any, pipeline: Callable[..., Iterator[Any]], address: str | None,
            failed: Callable[[str, BaseException], Any]) -> Iterator[Any]:
    """Run `pipeline([path], spec)` for every path as a Ray task; yield results in completion order."""
    import logging

    import ray

    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"runtime_env": {"env_vars": _ray_env()}, "logging_level": logging.WARNING}
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(include_dashboard=False, **kwargs)
        except Exception as e:  # noqa: BLE001 - no cluster there, or a local runtime that cannot start
            where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
            raise BackendError(f"cannot start or reach {where}: {error_line(e)} — check --ray-address "
                               "(`ray status` on the head node), or leave it out to run Ray locally") from None
        started = True
    task = ray.remote(num_cpus=1)(_ray_task).options(runtime_env={"env_vars": _ray_env()})
    refs = {task.remote(p, spec, pipeline): p for p in paths}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker died (OOM, node lost…): that document failed
                    yield failed(refs[ref], e)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
