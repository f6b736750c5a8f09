"""The team's own code: job handlers, cron jobs and record-event handlers.

A hooks module (setting `SHIPYARD_HOOKS`) creates a `Functions` registry and decorates its
functions with it; Shipyard finds the registry by name (`functions`) when it loads the
module. Built-in jobs are registered the same way (jobs/builtin.py, and each capability's extension). Decorators return
the function unchanged, so hooks stay plain, testable Python functions.

    from shipyard.functions import Functions
    functions = Functions()

    @functions.job("thumbnail", max_attempts=5, timeout=30)
    async def thumbnail(ctx, args): ...

    @functions.cron("*/5 * * * *")
    async def cleanup(ctx, args): ...

    @functions.on_record("posts", "create", "update")            # after commit: a job
    async def index_post(ctx, event): ...

    @functions.on_record("posts", "delete", when="before_commit")  # inside the transaction
    async def forbid(ctx, event): raise ctx.reject("Posts cannot be deleted.")

See docs/jobs.md for the whole API.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from shipyard.tools.cronexpr import CronError, check_schedule

ACTIONS = ("create", "update", "delete")
WHEN = ("before_commit", "after_commit")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,120}$")

Handler = Callable[..., Any]


class FunctionsError(ValueError):
    """A function was registered with options Shipyard cannot use."""


class Reject(Exception):
    """Raised by a before_commit handler: refuse the write; the client gets a 400."""

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data or {}


@dataclass
class JobOptions:
    """Per job type; None means the setting's default (docs/settings.md)."""

    queue: str = "default"
    priority: int = 0
    max_attempts: int | None = None
    timeout: float | None = None  # seconds per attempt
    backoff_base: float | None = None  # seconds before the first retry, doubling after
    backoff_max: float | None = None
    concurrency: int | None = None  # across every worker
    isolated: bool | None = None  # run in a subprocess with time and memory limits
    memory_mb: int | None = None  # isolated only

    def check(self, what: str) -> None:
        """At registration: a bad option must stop startup, not fail each enqueue."""
        if not isinstance(self.queue, str) or not _NAME.match(self.queue):
            raise FunctionsError(f"{what}: queue must match {_NAME.pattern}")
        if not _is_int(self.priority):
            raise FunctionsError(f"{what}: priority must be an integer (lower runs first)")
        for name in ("max_attempts", "concurrency", "memory_mb"):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < 1):
                raise FunctionsError(f"{what}: {name} must be a positive integer")
        for name in ("timeout", "backoff_base", "backoff_max"):
            v = getattr(self, name)
            if v is not None and not (_is_number(v) and v > 0):
                raise FunctionsError(f"{what}: {name} must be a positive number of seconds")
        if self.isolated is not None and not isinstance(self.isolated, bool):
            raise FunctionsError(f"{what}: isolated must be True or False")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class JobType:
    name: str
    fn: Handler
    options: JobOptions = field(default_factory=JobOptions)
    builtin: bool = False


@dataclass
class CronJob:
    name: str
    schedule: str
    job: JobType  # kind "cron:<name>"


@dataclass
class RecordHandler:
    name: str
    collection: str  # a collection name, or "*" for every collection
    actions: tuple[str, ...]
    when: str
    fn: Handler
    job: JobType | None = None  # after_commit: kind "event:<name>"

    def matches(self, collection: str, action: str) -> bool:
        return action in self.actions and self.collection in ("*", collection)


def _options(kwargs: dict[str, Any], what: str) -> JobOptions:
    try:
        opts = JobOptions(**kwargs)
    except TypeError as exc:
        raise FunctionsError(f"{what}: {exc}") from None
    opts.check(what)
    return opts


class Functions:
    """A registry of functions; decorators add to it, `merge` combines registries."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobType] = {}
        self.crons: dict[str, CronJob] = {}
        self.record_handlers: list[RecordHandler] = []

    # ------------------------------------------------------------------ decorators

    def job(self, name: str | None = None, **options: Any) -> Callable[[Handler], Handler]:
        """A job handler `fn(ctx, args)`, enqueued by name (`ctx.enqueue`, `POST /api/jobs`)."""

        def register(fn: Handler) -> Handler:
            self.add_job(name or fn.__name__, fn, **options)
            return fn

        return register

    def cron(
        self, schedule: str, name: str | None = None, **options: Any
    ) -> Callable[[Handler], Handler]:
        """Run `fn(ctx, args)` on a 5-field cron schedule (UTC); `args["tick"]` is the
        scheduled time. Each tick runs once however many workers there are."""

        def register(fn: Handler) -> Handler:
            cname = name or fn.__name__
            try:
                check_schedule(schedule, f"cron {cname!r}")
            except CronError as exc:
                raise FunctionsError(str(exc)) from None
            job = self.add_job(f"cron:{cname}", fn, **options)
            if cname in self.crons:
                raise FunctionsError(f"cron {cname!r} is registered twice")
            self.crons[cname] = CronJob(cname, schedule, job)
            return fn

        return register

    def on_record(
        self,
        collection: str,
        *actions: str,
        when: str = "after_commit",
        name: str | None = None,
        **options: Any,
    ) -> Callable[[Handler], Handler]:
        """Call `fn(ctx, event)` when a record of `collection` ("*": any) is created,
        updated or deleted (all three when no action is named).

        `after_commit` (default): a durable job, enqueued in the write's transaction; it
        runs after the commit with retries. `before_commit`: runs inside the transaction,
        before the response; raising refuses the write (`ctx.reject(message)` gives the
        client a 400 with that message) and `ctx.tx` writes in the same transaction."""
        acts = tuple(actions) or ACTIONS
        bad = [a for a in acts if a not in ACTIONS]
        if bad:
            raise FunctionsError(f"on_record: unknown action(s) {bad}; expected {ACTIONS}")
        if when not in WHEN:
            raise FunctionsError(f"on_record: when must be one of {WHEN}")

        def register(fn: Handler) -> Handler:
            # "*" cannot be part of a job kind: handlers of every collection are "all.<fn>"
            hname = name or f"{'all' if collection == '*' else collection}.{fn.__name__}"
            if any(h.name == hname for h in self.record_handlers):
                raise FunctionsError(f"record handler {hname!r} is registered twice")
            job = None
            if when == "after_commit":
                job = self.add_job(f"event:{hname}", fn, **options)
            else:
                # not a queued job, but its options (timeout, isolated) apply the same way
                job = JobType(f"before:{hname}", fn, _options(options, f"record handler {hname!r}"))
            self.record_handlers.append(RecordHandler(hname, collection, acts, when, fn, job))
            return fn

        return register

    # ------------------------------------------------------------------ plumbing

    def add_job(self, name: str, fn: Handler, *, builtin: bool = False, **options: Any) -> JobType:
        if not _NAME.match(name):
            raise FunctionsError(f"job name {name!r} must match {_NAME.pattern}")
        if name in self.jobs:
            raise FunctionsError(f"job {name!r} is registered twice")
        if not callable(fn):
            raise FunctionsError(f"job {name!r}: handler is not callable")
        jt = JobType(name, fn, _options(options, f"job {name!r}"), builtin)
        self.jobs[name] = jt
        return jt

    def merge(self, other: Functions) -> Functions:
        """A new registry with both; a name registered in both is an error."""
        out = Functions()
        for reg in (self, other):
            for jt in reg.jobs.values():
                if jt.name in out.jobs:
                    raise FunctionsError(f"job {jt.name!r} is registered twice")
                out.jobs[jt.name] = replace(jt)
            for cj in reg.crons.values():
                out.crons[cj.name] = cj
            out.record_handlers += reg.record_handlers
        return out

    def handlers_for(self, collection: str, action: str, when: str) -> list[RecordHandler]:
        return [h for h in self.record_handlers if h.when == when and h.matches(collection, action)]


def load_hooks(spec: str) -> tuple[Functions, tuple[str, str | None]]:
    """Import the hooks module named by the setting (a `.py` path, or a module name) and
    return its `functions` registry with (module name, file) for isolated runs."""
    from pathlib import Path

    from shipyard.tools.sandbox import load_module

    if spec.endswith(".py") or "/" in spec:
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise FunctionsError(f"SHIPYARD_HOOKS: {spec} is not a file")
        name = "shipyard_hooks_" + re.sub(r"\W", "_", path.stem)
        mod = load_module(name, str(path))
        file: str | None = str(path)
    else:
        mod = load_module(spec, None)
        name, file = spec, getattr(mod, "__file__", None)
    reg = getattr(mod, "functions", None)
    if not isinstance(reg, Functions):
        raise FunctionsError(
            f"SHIPYARD_HOOKS: {spec} must define `functions = Functions()` "
            "(from shipyard.functions import Functions)"
        )
    return reg, (name, file)
