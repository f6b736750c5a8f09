"""The composition root of the domain: builds every capability from settings, once, in
dependency order, and plugs each in through the extension interface (kernel/extension.py).

Nothing here is assigned after construction: the database platform comes first (the
database, the write watcher, Redis, the slow-query log, the schema store), then records
with its event bus and the cache it reports totals to, then auth, jobs, webhooks, the
advisor, metrics and the team's own extensions. What capabilities contribute to one another —
job kinds, record-event subscribers, write watchers — is registered, not wired by hand.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from shipyard.alerts.extension import AlertsExtension
from shipyard.assets.extension import AssetsExtension
from shipyard.auth.extension import AuthExtension
from shipyard.auth.login import AuthService
from shipyard.backups.extension import BackupsExtension
from shipyard.batch.extension import BatchExtension
from shipyard.cache.cache import ResponseCache, build_versions
from shipyard.cache.extension import CacheExtension
from shipyard.dbadvice.extension import DbAdviceExtension
from shipyard.errors.extension import ErrorsExtension
from shipyard.files.extension import FilesExtension
from shipyard.http.settings_api import SettingsApiExtension
from shipyard.jobs.extension import JobsExtension
from shipyard.jobs.jobs import Jobs
from shipyard.kernel.extension import Extension, HealthCheck, in_dependency_order
from shipyard.kernel.functions import Functions, load_hooks
from shipyard.kernel.runtime import RuntimeSettings
from shipyard.kernel.telemetry import Telemetry
from shipyard.logs.extension import LogsExtension
from shipyard.metrics.extension import MetricsExtension
from shipyard.ratelimit.extension import RateLimitExtension
from shipyard.ratelimit.limits import RateLimits
from shipyard.realtime.extension import RealtimeExtension
from shipyard.realtime.service import Realtime
from shipyard.records.events import RecordEvents
from shipyard.records.extension import RecordsExtension
from shipyard.records.passwords import PasswordHashing
from shipyard.records.records import Records
from shipyard.records.schema import SchemaStore
from shipyard.settings import Settings
from shipyard.tools.attempts import AttemptLimiter
from shipyard.tools.db import Database, QueryTimer, auxiliary, connect
from shipyard.tools.db_metrics import QueryMetrics
from shipyard.tools.dbwatch import WatchedDatabase
from shipyard.tools.params import ParamsStore
from shipyard.tools.redisclient import ResilientRedis
from shipyard.tools.slowlog import SlowQueryLog
from shipyard.webhooks.extension import WebhooksExtension
from shipyard.webhooks.webhooks import Webhooks


class ExtensionError(ValueError):
    """SHIPYARD_EXTENSIONS names something that is not an extension factory."""


def load_extensions(spec: str, svc: Services) -> list[Extension]:
    """The team's extensions: `package.module:factory`, comma-separated; each factory is
    called with the services and returns an Extension."""
    out: list[Extension] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        module_name, _, attr = item.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr or "extension")
        except (ImportError, AttributeError) as exc:
            raise ExtensionError(f"SHIPYARD_EXTENSIONS: cannot load {item!r}: {exc}") from exc
        ext = factory(svc)
        if not isinstance(ext, Extension):
            raise ExtensionError(f"SHIPYARD_EXTENSIONS: {item!r} did not return an Extension")
        out.append(ext)
    return out


class Services:
    """Everything a route, a job or a command needs, built by `open` in one go."""

    def __init__(
        self,
        settings: Settings,
        raw_db: Database,
        db: WatchedDatabase,
        redis: ResilientRedis | None,
        slowlog: SlowQueryLog,
        store: SchemaStore,
        events: RecordEvents,
        cache: ResponseCache,
        records: Records,
        attempts: AttemptLimiter,
        auth: AuthService,
        user_functions: Functions,
        hooks_module: tuple[str, str | None] | None,
        runtime: RuntimeSettings[Settings],
        telemetry: Telemetry,
        aux_db: Database,
    ) -> None:
        self.settings = settings  # as at start-up
        # the settings in effect now (/api/settings): `await runtime.current()`
        self.runtime = runtime
        # this process's metrics, request observers and exception sinks (kernel/telemetry.py)
        self.telemetry = telemetry
        self.raw_db = raw_db
        # request logs, error events, process metrics, alert state (tools/db.py auxiliary)
        self.aux_db = aux_db
        self.db = db
        self.redis = redis
        self.slowlog = slowlog
        self.store = store
        self.events = events
        self.cache = cache
        self.records = records
        self.attempts = attempts
        self.auth = auth
        # job handlers see these services as `ctx.services`
        self.jobs = Jobs(
            settings, db, raw_db, store, records, user_functions, hooks_module, self, telemetry
        )
        self.webhooks = Webhooks(raw_db, store, self.jobs, telemetry.metrics)
        jobs = self.jobs

        async def wake_worker(tables: set[str]) -> None:
            jobs.written(tables)

        db.subscribe(wake_worker)

        def collection_name(id_or_name: str) -> str:
            found = store.get(id_or_name)
            return found.name if found is not None else id_or_name

        # the gateway asks it about every request (docs/ratelimit.md)
        self.ratelimits = RateLimits(
            settings, runtime, redis, auth.authenticate, collection_name,
            telemetry.metrics, telemetry.metrics_enabled,
        )  # fmt: skip
        assets = AssetsExtension(settings, self.jobs)
        self.extensions: list[Extension] = [
            RecordsExtension(store, db, settings),
            AuthExtension(auth),
            CacheExtension(cache, db),
            JobsExtension(self.jobs, settings.jobs_worker),
            WebhooksExtension(self.webhooks, settings),
            FilesExtension(settings, runtime, self.jobs, db, assets.cdn),
            DbAdviceExtension(),
            MetricsExtension(settings, raw_db, aux_db, telemetry, self.jobs.queue),
            LogsExtension(settings, runtime, aux_db, telemetry),
            ErrorsExtension(aux_db, settings, telemetry, redis),
            SettingsApiExtension(runtime),
            RateLimitExtension(self.ratelimits, runtime),
            AlertsExtension(self),
            assets,
            BatchExtension(),
            RealtimeExtension(Realtime(settings, store, db, raw_db, aux_db, redis)),
            BackupsExtension(self),
        ]
        self.extensions = in_dependency_order(
            [*self.extensions, *load_extensions(settings.extensions, self)]
        )
        functions = Functions()
        for ext in self.extensions:
            contributed = ext.functions()
            if contributed is not None:
                functions = functions.merge(contributed)
            for subscriber in ext.record_subscribers():
                events.subscribe(subscriber)
            for decorator in ext.record_decorators():
                records.decorate_with(decorator)
            runtime.declare(*ext.settings_sections())
            telemetry.observers.extend(ext.request_observers())
            telemetry.sinks.extend(ext.exception_sinks())
        jobs.register(functions)

    @classmethod
    async def open(cls, settings: Settings, *, start: bool = False) -> Services:
        """Connect, build, migrate every capability; with `start`, also start their
        background work (the server does; one-off CLI commands do not)."""
        telemetry = Telemetry(metrics_enabled=settings.metrics_enabled)
        slowlog = SlowQueryLog(settings.slow_query_ms)
        timer: QueryTimer | None = slowlog.timer
        if settings.metrics_enabled:  # every statement timed into a histogram, slow ones logged
            engine = "postgres" if settings.is_postgres else "sqlite"
            timer = QueryMetrics(telemetry.metrics, engine, slowlog.timer)
            telemetry.folds.append(timer.fold)
        raw = await connect(
            settings.database_url,
            settings.sqlite_path,
            timer=timer,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            timeout=settings.db_pool_timeout,
            max_idle=settings.db_pool_max_idle,
            statement_timeout_ms=settings.db_statement_timeout_ms,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )
        # the log writes `_slow_queries` on the raw database: its writes invalidate no cache
        await slowlog.start(raw)
        redis = (
            ResilientRedis(
                settings.redis_url, settings.redis_timeout, settings.redis_retry_interval
            )
            if settings.redis_url
            else None
        )
        # every committed write reaches its watchers (the cache, the local job worker)
        watched = WatchedDatabase(raw)
        store = SchemaStore(watched)
        await store.init()
        cache = ResponseCache(
            settings, store, build_versions(settings, store, redis), telemetry.metrics
        )
        events = RecordEvents()
        passwords = PasswordHashing(settings.password_hash_concurrency)
        records = Records(
            store, watched, settings, totals=cache, events=events, passwords=passwords
        )
        # login counters on the raw database: they change no cached response
        attempts = AttemptLimiter(raw, secret=settings.secret_key.encode())
        auth = AuthService(settings, store, watched, attempts, passwords, telemetry.metrics)
        user, module = load_hooks(settings.hooks) if settings.hooks else (Functions(), None)
        # stored in `_params` on the raw database: a settings change invalidates no cache
        runtime = RuntimeSettings(ParamsStore(raw), settings)
        svc = cls(
            settings, raw, watched, redis, slowlog, store, events, cache, records, attempts,
            auth, user, module, runtime, telemetry, auxiliary(raw, timer),
        )  # fmt: skip
        await runtime.open()  # every section declared: their stored values apply
        for ext in svc.extensions:
            await ext.migrate()
        if start:
            await svc.start()
        return svc

    async def start(self, role: str = "server") -> None:
        """Start the background work of the capabilities that run in this kind of process
        (`Extension.roles`): "server" for `shipyard serve`, "worker" for `shipyard worker`."""
        for ext in self.extensions:
            if role in ext.roles:
                ext.role = role
                await ext.start()
        self.telemetry.start()

    async def close(self) -> None:
        await self.telemetry.stop()  # the last finished requests, to the observers
        for ext in reversed(self.extensions):
            await ext.stop()
        await self.slowlog.close()
        await self.store.close()
        await self.db.close()
        if self.aux_db is not self.raw_db:
            await self.aux_db.close()
        if self.redis is not None:
            await self.redis.close()

    def routes(self) -> list[BaseRoute]:
        return [r for ext in self.extensions for r in ext.routes()]

    def health_checks(self) -> Sequence[HealthCheck]:
        return [c for ext in self.extensions for c in ext.health_checks()]

    def extension(self, name: str) -> Any:
        """The enabled extension called `name` (KeyError if none)."""
        for ext in self.extensions:
            if ext.name == name:
                return ext
        raise KeyError(name)


__all__ = ["ExtensionError", "Services", "load_extensions"]
