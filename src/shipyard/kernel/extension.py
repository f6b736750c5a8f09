"""The one extension interface: how every capability plugs into Shipyard.

Built-in capabilities (records, auth, cache, jobs, webhooks, dbadvice…) and a team's own
code implement the same class. The composition root (`services.py`) builds them in
dependency order, then asks each for what it contributes:

- `routes()`: Starlette routes, mounted under the one error mapping and CORS;
- `openapi(collections, viewer)`: its parts of the OpenAPI document;
- `functions()`: job kinds (and record handlers) it registers, like a team's hooks;
- `record_subscribers()`: listeners on the record-event bus (records/events.py);
- `health_checks()`: named async checks, reported by `GET /api/health?verbose`;
- `health_detail()`: facts superusers see in `GET /api/health` (disk free, queue lag…);
- `settings_sections()`: its runtime settings (kernel/runtime.py), in `/api/settings`;
- `request_observers()` / `exception_sinks()`: what it does with every finished request
  and every unhandled exception (kernel/telemetry.py: the logs and error tracking);
- `migrate()` then `start()` at start-up (in order), `stop()` at shut-down (reverse order).

Every method has a harmless default, so an extension implements only what it has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shipyard.kernel.functions import Functions
from shipyard.kernel.runtime import Section
from shipyard.kernel.spec import OpenAPIPart, Viewer
from shipyard.kernel.telemetry import ExceptionSink, RequestObserver

if TYPE_CHECKING:  # types only: kernel sits below every capability
    from starlette.routing import BaseRoute


@dataclass(frozen=True)
class HealthCheck:
    """`check()` returns normally when healthy and raises (any exception) when not."""

    name: str
    check: Callable[[], Awaitable[None]]
    critical: bool = True  # a failing critical check makes /api/health answer 503


@dataclass
class Extension:
    """Base class of capabilities. `name` is unique; `requires` names capabilities that
    must be built (and started) before this one."""

    name: str = ""
    requires: Sequence[str] = field(default_factory=tuple)
    # the kinds of process whose start() starts it: "server" (`shipyard serve`) and/or
    # "worker" (`shipyard worker`); one-off commands start nothing
    roles: Sequence[str] = ("server",)
    # the kind of process it was started in (set by Services.start before start())
    role: str = "server"

    def routes(self) -> Sequence[BaseRoute]:
        return ()

    def openapi(self, collections: Sequence[Any], viewer: Viewer) -> Sequence[OpenAPIPart]:
        """Its parts of the OpenAPI document, given the live collections (records'
        `Collection`s) and who the document is for."""
        return ()

    def functions(self) -> Functions | None:
        return None

    def record_subscribers(self) -> Sequence[Any]:
        """`records.events.RecordSubscriber`s (typed there: records sits above kernel)."""
        return ()

    def record_decorators(self) -> Sequence[Any]:
        """`records.decorate.RecordDecorator`s: additions to returned records that a
        request asks for by a query parameter (typed there: records sits above kernel)."""
        return ()

    def health_checks(self) -> Sequence[HealthCheck]:
        return ()

    async def health_detail(self) -> Mapping[str, Any]:
        """What superusers see of it in `GET /api/health` (merged into `data`): a few cheap
        facts (disk free, queue lag…); never a secret."""
        return {}

    def settings_sections(self) -> Sequence[Section]:
        """The sections of runtime settings it owns: shown and changed through
        `/api/settings`, read with `await services.runtime.current()`."""
        return ()

    def request_observers(self) -> Sequence[RequestObserver]:
        """Called after every HTTP request, on the event loop: cheap, never blocking."""
        return ()

    def exception_sinks(self) -> Sequence[ExceptionSink]:
        """Called with every unhandled exception (a 500, a failed job)."""
        return ()

    async def migrate(self) -> None:
        """Create or upgrade this capability's tables (idempotent; runs on every start)."""

    async def start(self) -> None:
        """Begin background work (after every capability has migrated)."""

    async def stop(self) -> None:
        """Stop background work and release resources."""


def in_dependency_order(extensions: Sequence[Extension]) -> list[Extension]:
    """`extensions` sorted so that each comes after what it requires (stable otherwise);
    a missing or circular requirement is a configuration error."""
    by_name: dict[str, Extension] = {}
    for ext in extensions:
        if not ext.name or ext.name in by_name:
            raise ValueError(f"extension name {ext.name!r} is empty or used twice")
        by_name[ext.name] = ext
    done: list[Extension] = []
    state: dict[str, str] = {}

    def visit(ext: Extension, path: tuple[str, ...]) -> None:
        if state.get(ext.name) == "done":
            return
        if state.get(ext.name) == "visiting":
            raise ValueError("circular extension requirements: " + " -> ".join((*path, ext.name)))
        state[ext.name] = "visiting"
        for need in ext.requires:
            if need not in by_name:
                raise ValueError(f"extension {ext.name!r} requires {need!r}, which is not enabled")
            visit(by_name[need], (*path, ext.name))
        state[ext.name] = "done"
        done.append(ext)

    for ext in extensions:
        visit(ext, ())
    return done
