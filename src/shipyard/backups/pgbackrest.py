"""pgBackRest's configuration for point-in-time recovery of the team's PostgreSQL cluster
(`shipyard backup pg-config`, docs/operations/pitr-postgresql.md).

Shipyard's own archives (`pg_dump`) restore to the moment they were taken; continuous WAL
archiving lets a cluster be restored to any moment since its last full backup. pgBackRest
does the work; this module only writes its configuration (the S3 secret goes into that
file, mode 0600, and nowhere else) and says what the team sets in postgresql.conf and runs.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_CONFIG = "/etc/pgbackrest/pgbackrest.conf"  # pgBackRest's own default
DEFAULT_REPO = "/var/lib/pgbackrest"  # Debian's package makes it, owned by postgres
DEFAULT_S3_REPO = "/pgbackrest"  # the key prefix in the bucket
STANZA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class PgConfigError(Exception):
    """The configuration cannot be written: the message says why."""


@dataclass(frozen=True)
class PgConfigOptions:
    """What `shipyard backup pg-config` was asked for (empty: found or defaulted)."""

    config: str = DEFAULT_CONFIG
    stanza: str = "shipyard"
    repo: str = ""  # a local directory, or the path in the bucket for S3
    repo_type: str = ""  # "posix" or "s3"; empty: s3 when the backups S3 settings are on
    pg_path: str = ""  # the data directory; empty: `SHOW data_directory` on the server
    pg_port: int | None = None  # empty: the database URL's port, else 5432
    pg_socket_path: str = ""  # empty: the URL's host when it is a socket directory
    pg_user: str = ""  # the role pgBackRest connects as; empty: the OS user's name
    retention_full: int = 2  # full backups kept (and the WAL they need)
    log_path: str = ""  # empty: pgBackRest's (/var/log/pgbackrest)
    lock_path: str = ""  # empty: pgBackRest's (/tmp/pgbackrest)
    owner: str = ""  # an OS user given the file and the directories (as root)


@dataclass
class PgConfigResult:
    text: str  # the configuration written (holds the secret: never printed)
    lines: list[str]  # what to tell the team (no secret)
    notes: list[str] = field(default_factory=list)  # warnings, for stderr


def data_directory(url: str) -> str:
    """The cluster's data directory, asked from the server (needs a superuser or a member
    of pg_read_all_settings)."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
    except psycopg.Error as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PgConfigError(
            f"could not ask the server for its data directory ({msg}); pass --pg-path"
        ) from None
    return str(row[0]) if row else ""


def _url_parts(url: str) -> tuple[int | None, str]:
    """The port and the socket directory (a host starting with /) of a PostgreSQL URL."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception:  # a malformed URL: the defaults
        return None, ""
    port, host = str(params.get("port") or ""), str(params.get("host") or "")
    return (int(port) if port.isdigit() else None), (host if host.startswith("/") else "")


def _absolute(path: str, what: str) -> str:
    if not path:
        raise PgConfigError(f"{what}: empty")
    if "\n" in path or "\r" in path:
        raise PgConfigError(f"{what}: must be one line")
    return str(Path(path).expanduser().absolute())


def _s3_lines(s: Any, repo: str) -> tuple[list[str], list[str]]:
    """The repo1 options for the backups S3 settings, and warnings."""
    if not (s.backups_s3_bucket and s.backups_s3_access_key and s.backups_s3_secret):
        raise PgConfigError(
            "an S3 repository needs SHIPYARD_BACKUPS_S3_BUCKET, _ACCESS_KEY and _SECRET"
        )
    region = s.backups_s3_region or "us-east-1"
    notes: list[str] = []
    endpoint, port = f"s3.{region}.amazonaws.com", None
    if s.backups_s3_endpoint:
        parts = urlsplit(
            s.backups_s3_endpoint if "//" in s.backups_s3_endpoint else "//" + s.backups_s3_endpoint
        )
        endpoint, port = parts.hostname or "", parts.port
        if parts.scheme == "http":
            notes.append("pgBackRest reaches S3 over HTTPS only: the endpoint's http:// is ignored")
    lines = [
        "repo1-type=s3",
        f"repo1-path={repo}",
        f"repo1-s3-bucket={s.backups_s3_bucket}",
        f"repo1-s3-endpoint={endpoint}",
        f"repo1-s3-region={region}",
        f"repo1-s3-key={s.backups_s3_access_key}",
        f"repo1-s3-key-secret={s.backups_s3_secret}",
    ]
    if port:
        lines.append(f"repo1-s3-port={port}")
    if s.backups_s3_force_path_style:
        lines.append("repo1-s3-uri-style=path")
    for line in lines:
        if "\n" in line or "\r" in line:
            raise PgConfigError(f"{line.split('=', 1)[0]}: must be one line")
    return lines, notes


def render(opts: PgConfigOptions, settings: Any, pg_path: str) -> tuple[str, list[str], str]:
    """The configuration file's text, warnings, and the repository (for the summary)."""
    if not STANZA_RE.match(opts.stanza):
        raise PgConfigError(
            "--stanza: letters, digits, _ and - (at most 64), not starting with _/-"
        )
    if not 1 <= opts.retention_full <= 9999:
        raise PgConfigError("--retention-full: between 1 and 9999")
    url_port, url_socket = _url_parts(settings.database_url) if settings.is_postgres else (None, "")
    port = opts.pg_port or url_port or 5432
    if not 1 <= port <= 65535:
        raise PgConfigError("--pg-port: between 1 and 65535")
    repo_type = opts.repo_type or ("s3" if settings.backups_s3_enabled else "posix")
    notes: list[str] = []
    glob = [f"repo1-retention-full={opts.retention_full}", "start-fast=y"]
    if repo_type == "s3":
        repo = opts.repo or DEFAULT_S3_REPO
        if not repo.startswith("/"):
            raise PgConfigError("--repo: the path in the bucket starts with /")
        s3, notes = _s3_lines(settings, repo)
        glob = [*s3, *glob]
        where = f"s3://{settings.backups_s3_bucket}{repo}"
    else:
        repo = _absolute(opts.repo or DEFAULT_REPO, "--repo")
        glob = [f"repo1-path={repo}", *glob]
        where = repo
    if opts.log_path:
        glob.append(f"log-path={_absolute(opts.log_path, '--log-path')}")
    if opts.lock_path:
        glob.append(f"lock-path={_absolute(opts.lock_path, '--lock-path')}")
    stanza = [f"pg1-path={_absolute(pg_path, '--pg-path')}", f"pg1-port={port}"]
    socket = opts.pg_socket_path or url_socket
    if socket:
        stanza.append(f"pg1-socket-path={_absolute(socket, '--pg-socket-path')}")
    if opts.pg_user:
        if not re.match(r"^[A-Za-z0-9_.-]+$", opts.pg_user):
            raise PgConfigError("--pg-user: letters, digits, _, . and -")
        stanza.append(f"pg1-user={opts.pg_user}")
    text = (
        "# written by `shipyard backup pg-config` (docs/operations/pitr-postgresql.md)\n"
        "[global]\n" + "".join(f"{line}\n" for line in glob) + "\n"
        f"[{opts.stanza}]\n" + "".join(f"{line}\n" for line in stanza)
    )
    return text, notes, where


def _write_private(path: Path, text: str, uid: int | None, gid: int | None) -> None:
    """Write `text` to `path` readable by its owner only, replacing it in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        if uid is not None and gid is not None:
            os.chown(tmp, uid, gid)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _make_dir(path: str, uid: int | None, gid: int | None) -> None:
    p = Path(path)
    p.mkdir(mode=0o750, parents=True, exist_ok=True)
    if uid is not None and gid is not None:
        os.chown(p, uid, gid)


def write_config(opts: PgConfigOptions, settings: Any) -> PgConfigResult:
    """Write the configuration (the directories it names too, for a local repository) and
    say what to set in postgresql.conf and what to run."""
    uid = gid = None
    if opts.owner:
        try:
            entry = pwd.getpwnam(opts.owner)
        except KeyError:
            raise PgConfigError(f"--owner: no such user {opts.owner!r}") from None
        uid, gid = entry.pw_uid, entry.pw_gid
    pg_path = opts.pg_path
    if not pg_path:
        if not settings.is_postgres:
            raise PgConfigError(
                "SHIPYARD_DATABASE_URL is not PostgreSQL: set it, or pass --pg-path"
            )
        pg_path = data_directory(settings.database_url)
    text, notes, where = render(opts, settings, pg_path)
    config = Path(_absolute(opts.config, "--config"))
    _write_private(config, text, uid, gid)
    if not where.startswith("s3://"):
        _make_dir(where, uid, gid)
    for path, what in ((opts.log_path, "--log-path"), (opts.lock_path, "--lock-path")):
        if path:
            _make_dir(_absolute(path, what), uid, gid)
    return PgConfigResult(text, instructions(opts, config, where), notes)


def pgbackrest_command(config: Path, stanza: str, *args: str) -> str:
    """A pgBackRest command line for this configuration (`--config` unless the default)."""
    parts = ["pgbackrest"]
    if str(config) != DEFAULT_CONFIG:
        parts.append(f"--config={config}")
    return shlex.join([*parts, f"--stanza={stanza}", *args])


def instructions(opts: PgConfigOptions, config: Path, where: str) -> list[str]:
    archive = pgbackrest_command(config, opts.stanza, "archive-push") + " %p"
    run = [
        pgbackrest_command(config, opts.stanza, "stanza-create"),
        pgbackrest_command(config, opts.stanza, "check"),
        pgbackrest_command(config, opts.stanza, "--type=full", "backup"),
        pgbackrest_command(config, opts.stanza, "info"),
    ]
    who = opts.owner or "the PostgreSQL server's OS user, e.g. postgres"
    return [
        f"wrote {config} (stanza {opts.stanza}, repository {where}, mode 0600)",
        "",
        "1. In postgresql.conf (then restart PostgreSQL: archive_mode needs it):",
        "   wal_level = replica",
        "   archive_mode = on",
        "   archive_command = '" + archive.replace("'", "''") + "'",
        "   archive_timeout = 60",
        "",
        f"2. Then, as {who}:",
        *(f"   {cmd}" for cmd in run),
        "",
        "3. Schedule full backups (e.g. weekly) and differential ones (e.g. daily):",
        "   " + pgbackrest_command(config, opts.stanza, "--type=diff", "backup"),
    ]
