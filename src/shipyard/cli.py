"""The `shipyard` command: serve, worker, migrate, superuser, db, errors, alerts, assets, backup,
demo."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click

from shipyard.settings import Settings, SettingsError, load_settings


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        click.echo(f"shipyard: bad setting: {exc}", err=True)
        sys.exit(2)


async def _report_if_stuck(seconds: float) -> None:
    """A command that should take seconds and is still waiting after `seconds` says on
    stderr what every task is waiting for (it keeps waiting: this only reports)."""
    await asyncio.sleep(seconds)
    me = asyncio.current_task()
    click.echo(f"shipyard: still waiting after {seconds:g} s; the tasks:", err=True)
    for task in asyncio.all_tasks():
        if task is not me:
            task.print_stack(file=sys.stderr)


def _run(settings: Settings, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    from shipyard.kernel.errors import ApiError
    from shipyard.services import Services

    async def main() -> Any:
        watchdog = asyncio.create_task(_report_if_stuck(60.0))
        try:
            svc = await Services.open(settings)
            try:
                return await fn(svc)
            finally:
                await svc.close()
        finally:
            watchdog.cancel()

    try:
        return asyncio.run(main())
    except ApiError as exc:
        detail = f" {exc.data}" if exc.data else ""
        click.echo(f"shipyard: {exc.message}{detail}", err=True)
        sys.exit(1)
    except SettingsError as exc:  # found while building a capability (alert rules)
        click.echo(f"shipyard: bad setting: {exc}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="shipyard")
def main() -> None:
    """Shipyard: a production-ready backend for MVP apps."""


@main.command()
@click.option("--host", default=None, help="Interface to bind (SHIPYARD_HOST, default 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (SHIPYARD_PORT, default 8090).")
@click.option("--workers", default=None, type=int, help="Server processes (SHIPYARD_WORKERS).")
@click.option("--data-dir", default=None, help="Data directory (SHIPYARD_DATA_DIR).")
@click.option("--schema-file", default=None, help="Declarative collections file to apply.")
@click.option("--demo", is_flag=True, default=None, help="Load the demo data set first.")
@click.option("--tls-cert", default=None, help="PEM certificate (chain): serve HTTPS.")
@click.option("--tls-key", default=None, help="PEM private key of --tls-cert.")
@click.option(
    "--self-signed",
    "tls_self_signed",
    is_flag=True,
    default=None,
    help="Serve HTTPS with a certificate of a local CA made in <data-dir>/tls (local use).",
)
@click.option(
    "--redirect-http",
    "redirect_http_port",
    default=None,
    type=int,
    help="Also listen for plain HTTP on this port, redirecting to HTTPS.",
)
def serve(**flags: Any) -> None:
    """Run the API server."""
    settings = _settings(**flags)
    from shipyard import declarative
    from shipyard.app import configure_logging
    from shipyard.declarative import SchemaFileError

    configure_logging(settings.log_level, settings.log_format)
    from shipyard.http import tls

    try:
        certs = tls.server_tls(settings)  # docs/https.md; before anything else is done
    except SettingsError as exc:
        click.echo(f"shipyard: bad setting: {exc}", err=True)
        sys.exit(2)

    async def prepare(svc: Any) -> None:
        if settings.schema_file:
            await declarative.apply_file(svc, settings.schema_file)
        if settings.demo:
            from shipyard import demo

            await demo.load(svc, announce=click.echo)

    try:
        _run(settings, prepare)
    except SchemaFileError as exc:
        click.echo(f"shipyard: {exc}", err=True)
        sys.exit(2)
    # worker processes read settings from the environment; preparation is done once, here
    for key, value in flags.items():
        if value is not None and key not in ("demo", "schema_file"):
            os.environ["SHIPYARD_" + key.upper()] = str(value)
    os.environ["SHIPYARD_DEMO"] = "0"
    os.environ["SHIPYARD_SCHEMA_FILE"] = ""
    from shipyard.http import server

    scheme = "https" if certs else "http"
    click.echo(
        f"Shipyard listening on {scheme}://{settings.host}:{settings.port}  (API under /api/)"
    )
    if certs and certs.ca:
        click.echo(
            f"  self-signed: trust the local CA {certs.ca} (curl --cacert, NODE_EXTRA_CA_CERTS)"
        )
    redirect = tls.start_redirect_listener(settings)
    replication = _start_pitr(settings)
    try:
        server.serve(settings, certs)  # granian, or uvicorn (SHIPYARD_HTTP_SERVER)
    finally:
        if replication is not None:  # after the workers: their last commits are shipped
            from shipyard.backups import pitr_supervisor

            pitr_supervisor.stop(replication)
        tls.stop(redirect)


def _start_pitr(settings: Settings) -> Any:
    """Litestream's supervisor process when SHIPYARD_BACKUPS_PITR is on (docs/backups.md)."""
    if not settings.backups_pitr:
        return None
    from shipyard.backups import pitr_supervisor
    from shipyard.backups.pitr import PitrError, describe

    try:
        proc = pitr_supervisor.start(settings)
    except PitrError as exc:
        click.echo(f"shipyard: {exc}", err=True)
        sys.exit(2)
    click.echo(f"  point-in-time recovery: replicating SQLite to {describe(settings)}")
    return proc


@main.command()
@click.option(
    "--concurrency", default=None, type=int, help="Jobs at once (SHIPYARD_JOBS_CONCURRENCY)."
)
@click.option("--queues", default=None, help="Comma-separated queues to serve (default: all).")
def worker(concurrency: int | None, queues: str | None) -> None:
    """Run a job worker (no HTTP): claims jobs until SIGTERM or Ctrl-C, then finishes
    running ones within SHIPYARD_JOBS_SHUTDOWN_GRACE seconds."""
    import signal

    settings = _settings(jobs_concurrency=concurrency, jobs_queues=queues)
    from shipyard.app import configure_logging

    configure_logging(settings.log_level, settings.log_format)

    async def run(svc: Any) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # the job worker, and what runs in every process: logs, metrics, error tracking
        await svc.start(role="worker")
        w = svc.jobs.worker
        click.echo(
            f"Shipyard worker {w.name}: {len(svc.jobs.types)} job types, "
            f"concurrency {w.concurrency}, queues {', '.join(w.queues or ['*'])}"
        )
        await stop.wait()
        click.echo("stopping: finishing running jobs…")

    _run(settings, run)


@main.command()
@click.option("--schema-file", default=None, help="Collections file (SHIPYARD_SCHEMA_FILE).")
@click.option("--confirm-data-loss", is_flag=True, help="Allow changes that drop or convert data.")
@click.option("--delete-missing", is_flag=True, help="Delete collections that the file omits.")
def migrate(schema_file: str | None, confirm_data_loss: bool, delete_missing: bool) -> None:
    """Create system tables and apply the declarative collections file."""
    settings = _settings(schema_file=schema_file)
    from shipyard import declarative
    from shipyard.declarative import SchemaFileError

    async def apply(svc: Any) -> int:
        if not settings.schema_file:
            return 0
        return await declarative.apply_file(
            svc,
            settings.schema_file,
            confirm_data_loss=confirm_data_loss,
            delete_missing=delete_missing,
        )

    try:
        n = _run(settings, apply)
    except SchemaFileError as exc:
        click.echo(f"shipyard: {exc}", err=True)
        sys.exit(1)
    click.echo(f"migrated: system tables ready, {n} collection(s) applied")


@main.group()
def superuser() -> None:
    """Manage superuser accounts."""


@superuser.command("create")
@click.argument("email")
@click.argument("password")
def superuser_create(email: str, password: str) -> None:
    from shipyard.auth import superusers

    _run(_settings(), lambda svc: superusers.create(svc, email, password))
    click.echo(f"superuser {email} created")


@superuser.command("update")
@click.argument("email")
@click.argument("password")
def superuser_update(email: str, password: str) -> None:
    from shipyard.auth import superusers

    _run(_settings(), lambda svc: superusers.update(svc, email, password))
    click.echo(f"superuser {email} updated")


@superuser.command("upsert")
@click.argument("email")
@click.argument("password")
def superuser_upsert(email: str, password: str) -> None:
    from shipyard.auth import superusers

    _run(_settings(), lambda svc: superusers.upsert(svc, email, password))
    click.echo(f"superuser {email} saved")


@superuser.command("delete")
@click.argument("email")
def superuser_delete(email: str) -> None:
    from shipyard.auth import superusers

    _run(_settings(), lambda svc: superusers.delete(svc, email))
    click.echo(f"superuser {email} deleted")


@main.group()
def db() -> None:
    """Database performance: the slow-query log and the index advisor."""


@db.command("advise")
@click.option("--top", default=20, show_default=True, help="How many slow shapes to explain.")
@click.option(
    "--by",
    type=click.Choice(["total", "max", "avg", "calls"]),
    default="total",
    show_default=True,
    help="Slowest by total, max or average time, or by number of calls.",
)
@click.option("--apply", "do_apply", is_flag=True, help="Create the proposed indexes.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def db_advise(top: int, by: str, do_apply: bool, as_json: bool) -> None:
    """Explain the slowest recorded queries and propose indexes (docs/performance.md)."""
    from shipyard.dbadvice import advise

    async def go(svc: Any) -> tuple[Any, list[str] | None]:
        rep = await advise.report(svc, top=top, by=by)
        applied = None
        if do_apply:
            applied = await advise.apply(svc.store, [p.index for p in rep.proposals])
        return rep, applied

    rep, applied = _run(_settings(), go)
    if as_json:
        import orjson

        out = rep.to_dict()
        if applied is not None:
            out["applied"] = applied
        click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return
    _print_advice(rep, applied)


def _print_advice(rep: Any, applied: list[str] | None) -> None:
    if not rep.items:
        click.echo(
            f"No slow queries recorded (SHIPYARD_SLOW_QUERY_MS={rep.threshold_ms:g}; 0 is off)."
        )
    for n, item in enumerate(rep.items, start=1):
        sh = item.shape
        click.echo(
            f"{n}. {sh.calls} calls, total {sh.total_ms:.1f} ms, max {sh.max_ms:.1f} ms, "
            f"avg {sh.avg_ms:.1f} ms, rows {sh.rows}"
        )
        sql = sh.sql if len(sh.sql) <= 300 else sh.sql[:300] + "…"
        click.echo(f"   {sql}")
        for line in item.plan:
            click.echo(f"   | {line}")
        if item.error:
            click.echo(f"   (no plan: {item.error})")
        for p in item.proposals:
            click.echo(f"   -> {p.index}")
    if rep.proposals:
        click.echo("\nProposed indexes:")
        for p in rep.proposals:
            click.echo(
                f"  {p.index}  -- {p.reason} ({len(p.shapes)} shape(s), {p.total_ms:.0f} ms)"
            )
    if applied is not None:
        click.echo(f"\napplied {len(applied)} index(es)" + "".join(f"\n  {i}" for i in applied))
    elif rep.proposals:
        click.echo("\nRun `shipyard db advise --apply` to add them to their collections.")


@db.command("reset")
def db_reset() -> None:
    """Forget the recorded slow-query shapes."""
    from shipyard.dbadvice import advise

    n = _run(_settings(), advise.reset)
    click.echo(f"forgot {n} slow query shape(s)")


@main.group()
def errors() -> None:
    """Error tracking: the DSNs Sentry SDKs report to (docs/errors.md)."""


@errors.command("dsn")
@click.option(
    "--project", default="shipyard", show_default=True, help="Project name (created if missing)."
)
def errors_dsn(project: str) -> None:
    """Print a project's DSN (SHIPYARD_APP_URL, else host and port, is its address)."""
    from shipyard.errors.projects import dsn_for
    from shipyard.errors.routes import public_url_from

    settings = _settings()

    async def go(svc: Any) -> str:
        ext = next(e for e in svc.extensions if e.name == "errors")
        p = await ext.tracker.projects.by_name(project)
        if p is None:
            p = await ext.tracker.projects.create({"name": project})
        return dsn_for(public_url_from(settings), p.public_key, p.id)

    click.echo(_run(settings, go))


@main.command()
def demo() -> None:
    """Load the demo data set (idempotent) without serving."""
    from shipyard import demo as demo_mod

    _run(_settings(), lambda svc: demo_mod.load(svc, announce=click.echo))


@main.group()
def alerts() -> None:
    """Alert rules for teams that run Prometheus (docs/alerts.md)."""


@alerts.command("export")
@click.option("--rules", "rules_file", default=None, help="Write the Prometheus rule file here.")
@click.option("--alertmanager", default=None, help="Write an Alertmanager configuration here.")
def alerts_export(rules_file: str | None, alertmanager: str | None) -> None:
    """The metric rules in effect as a Prometheus rule file (to stdout without options),
    and an Alertmanager receiver for the configured channels."""
    from pathlib import Path

    from shipyard.alerts.export import export, prometheus_rules

    async def go(svc: Any) -> Any:
        return await svc.runtime.current()

    settings = _run(_settings(), go)
    if rules_file is None and alertmanager is None:
        import yaml

        content, _ = prometheus_rules(settings)
        click.echo(yaml.safe_dump(content, sort_keys=False, width=10_000), nl=False)
        return
    for line in export(
        settings,
        Path(rules_file) if rules_file else None,
        Path(alertmanager) if alertmanager else None,
    ):
        click.echo(line)


@main.group()
def assets() -> None:
    """Static assets for the public directory (docs/assets.md)."""


@assets.command("build")
@click.argument("source", default="web", type=click.Path(file_okay=False))
@click.option("--out", default=None, help="Output directory (SHIPYARD_PUBLIC_DIR's directory).")
def assets_build(source: str, out: str | None) -> None:
    """Fingerprint, minify and precompress SOURCE (default ./web) into the public
    directory, with manifest.json; asset_url("name") in HTML pages becomes each file's
    fingerprinted URL (on SHIPYARD_CDN_URL when set)."""
    from pathlib import Path

    from shipyard.assets.config import public_path, validate
    from shipyard.tools.assetbuild import BuildError, build

    settings = _settings()
    try:
        validate(settings)
    except SettingsError as exc:
        click.echo(f"shipyard: bad setting: {exc}", err=True)
        sys.exit(2)
    dest = Path(out) if out else public_path(settings)
    try:
        report = build(Path(source), dest, base_url=settings.cdn_url)
    except BuildError as exc:
        click.echo(f"shipyard: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"built {report.files} files ({report.bytes_in} → {report.bytes_out} bytes, "
        f"{report.compressed} precompressed) into {dest}"
    )


@main.group()
def backup() -> None:
    """Backups of the database and the stored files (docs/backups.md)."""


def _backup_call(method: str, *args: Any) -> Any:
    """Run a method of the backups service; a refusal exits 1 with its message."""
    from shipyard.backups.service import BackupError, Busy

    async def call(svc: Any) -> Any:
        return await getattr(svc.extension("backups").backups, method)(*args)

    try:
        return _run(_settings(), call)
    except (BackupError, Busy) as exc:
        click.echo(f"shipyard: {exc}", err=True)
        sys.exit(1)


def _echo_run(run: Any) -> None:
    import json

    click.echo(json.dumps(run.to_json(), indent=2))
    if not run.ok:
        sys.exit(1)


@backup.command("create")
@click.argument("name", required=False, default="")
def backup_create(name: str) -> None:
    """Make a backup now (NAME: a-z, 0-9, _ and -, ending in .zip), checked after it is made."""
    from shipyard.backups.service import NAME_RE

    if name and not NAME_RE.match(name):
        click.echo("shipyard: the name must match ^[a-z0-9_-]+\\.zip$", err=True)
        sys.exit(2)
    _echo_run(_backup_call("create", name))


@backup.command("list")
def backup_list() -> None:
    """The stored backups: key, size in bytes, modified (UTC)."""
    from shipyard.backups.service import iso

    for item in _backup_call("listing"):
        click.echo(f"{item.key}\t{item.size}\t{iso(item.modified)}")


@backup.command("verify")
@click.argument("key")
def backup_verify(key: str) -> None:
    """Check a stored backup: checksums, a scratch restore, the integrity check, the counts."""
    _echo_run(_backup_call("verify", key))


@backup.command("restore")
@click.argument("key", required=False, default="")
@click.option("--at", "at", default=None, help="ISO 8601 time: restore the replica to it (PITR).")
@click.option("--from-replica", is_flag=True, help="Restore the latest of the PITR replica.")
def backup_restore(key: str, at: str | None, from_replica: bool) -> None:
    """Replace the data with a stored backup's KEY (a safety backup is taken first), or,
    with --at or --from-replica and the server stopped, with the point-in-time replica's."""
    if at is None and not from_replica:
        if not key:
            click.echo("shipyard: name a backup KEY, or use --at TIME / --from-replica", err=True)
            sys.exit(2)
        _echo_run(_backup_call("restore", key))
        return
    from shipyard.backups import pitr

    try:
        if key:
            raise pitr.PitrError("a KEY restores an archive; --at/--from-replica take none", 2)
        result = pitr.restore_command(_settings(), at)
    except pitr.PitrError as exc:
        click.echo(f"shipyard: {exc}", err=True)
        sys.exit(exc.code)
    click.echo(result)


@backup.command("pg-config")
@click.option("--config", default="/etc/pgbackrest/pgbackrest.conf", show_default=True)
@click.option("--stanza", default="shipyard", show_default=True)
@click.option("--repo", default="", help="Repository: a directory, or the path in the S3 bucket.")
@click.option("--repo-type", type=click.Choice(["posix", "s3"]), default=None, help="Default: s3 when SHIPYARD_BACKUPS_S3_ENABLED.")  # fmt: skip
@click.option("--pg-path", default="", help="Data directory (default: SHOW data_directory).")
@click.option("--pg-port", type=int, default=None, help="Default: the database URL's, or 5432.")
@click.option("--pg-socket-path", default="", help="The server's Unix socket directory.")
@click.option("--pg-user", default="", help="The role pgBackRest connects as.")
@click.option("--retention-full", type=int, default=2, show_default=True)
@click.option("--log-path", default="", help="pgBackRest's logs (default /var/log/pgbackrest).")
@click.option("--lock-path", default="", help="pgBackRest's locks (default /tmp/pgbackrest).")
@click.option("--owner", default="", help="OS user given the file and directories (as root).")
def backup_pg_config(repo_type: str | None, **opts: Any) -> None:
    """Write pgBackRest's configuration for point-in-time recovery of the PostgreSQL
    cluster, and print the postgresql.conf lines and commands that go with it."""
    from shipyard.backups.pgbackrest import PgConfigError, PgConfigOptions, write_config

    try:  # start-up settings only: writing a configuration changes nothing in the database
        result = write_config(PgConfigOptions(repo_type=repo_type or "", **opts), _settings())
    except (PgConfigError, OSError) as exc:
        click.echo(f"shipyard: {exc}", err=True)
        sys.exit(2)
    for note in result.notes:
        click.echo(f"shipyard: {note}", err=True)
    click.echo("\n".join(result.lines))


@backup.command("drill")
@click.argument("key", required=False, default="")
def backup_drill(key: str) -> None:
    """Restore a backup (default: the newest) into a scratch instance, start it, read
    through its API; prints RTO and RPO (JSON), exits 1 if the drill failed."""
    run = _backup_call("drill", key)
    if run is None:
        click.echo("shipyard: there is no backup to drill", err=True)
        sys.exit(1)
    _echo_run(run)


if __name__ == "__main__":
    main()
