"""Shipyard hooks module for `bench/jobs.py`, loaded by its `shipyard worker` processes
through `SHIPYARD_HOOKS` (with `bench/` on PYTHONPATH): a no-op job for throughput, and a job
that records when its handler started, for latency. `jobs_procrastinate.py` defines the same
two tasks for procrastinate.
"""

from __future__ import annotations

from typing import Any

from jobs_stamp import stamp

from shipyard.functions import Functions

functions = Functions()


@functions.job("bench_noop", max_attempts=1)
async def noop(ctx: Any, args: Any) -> None:
    return None


@functions.job("bench_stamp", max_attempts=1)
async def stamp_job(ctx: Any, args: Any) -> None:
    stamp("shipyard", int(args["i"]))
