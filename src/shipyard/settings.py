"""Settings from one place: `SHIPYARD_*` environment variables over an optional `shipyard.toml`.

Every limit lives here with a safe default, so the embedded server needs no configuration.
A bad value stops start-up with a `SettingsError` that names the setting.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.settings_backups import BackupsSettings, validate_backups

# the value parsers live in tools (several capabilities use them); re-exported here
from shipyard.settings_batch import BatchSettings, validate_batch
from shipyard.settings_http import HttpServerSettings, validate_http_server
from shipyard.settings_media import MediaSettings, validate_media
from shipyard.settings_observability import ObservabilitySettings, validate_observability
from shipyard.settings_realtime import RealtimeSettings, validate_realtime
from shipyard.tools.settings_parse import (
    SettingsError,
    parse_allow_list,
    parse_image_formats,
    parse_image_widths,
    parse_networks,
    parse_origins,
    parse_ttls,
)


@dataclass(frozen=True)
class Settings(
    ObservabilitySettings,
    MediaSettings,
    BatchSettings,
    RealtimeSettings,
    BackupsSettings,
    HttpServerSettings,
):
    data_dir: Path = Path("shipyard_data")
    database_url: str = ""  # empty: SQLite in data_dir; postgresql://… for PostgreSQL
    host: str = "127.0.0.1"
    port: int = 8090
    workers: int = 1
    schema_file: str = ""  # declarative collections file applied at start-up and by `migrate`
    max_body_size: int = 32 * 1024 * 1024
    max_per_page: int = 1000
    default_per_page: int = 30
    max_filter_length: int = 3500
    max_filter_expressions: int = 200
    max_expand_depth: int = 6
    max_sort_fields: int = 8
    # what one client filter may join: each costs a pass over a whole collection per row
    max_filter_collection_joins: int = 1  # distinct @collection sources (name or name:alias)
    max_filter_back_relations: int = 2  # distinct back-relation hops (<collection>_via_<field>)
    query_budget_ms: int = 3000  # database time of one records API request; 0: no limit
    db_pool_min: int = 1
    db_pool_max: int = 10
    db_pool_timeout: float = 10.0
    db_pool_max_idle: float = 600.0  # seconds an unused pooled connection lives above the minimum
    db_statement_timeout_ms: int = 30000  # PostgreSQL statement_timeout per statement; 0: none
    slow_query_ms: float = 100.0  # statements at least this slow are logged and counted; 0: off
    sqlite_busy_timeout_ms: int = 5000
    superuser_token_duration: int = 86400  # seconds
    log_level: str = "info"
    demo: bool = False
    # secrets: never logged, never serialized into responses
    secret_key: str = field(default="", repr=False)
    # brute-force protection: failed auth attempts allowed per window, counted in the database
    auth_max_failures_per_identity: int = 5
    auth_max_failures_per_ip: int = 20
    auth_failure_window: int = 300  # seconds
    # argon2id hashes/verifications running at once per process; more get a fast 503
    password_hash_concurrency: int = 4
    # outgoing mail (auth collections' verification / password reset / e-mail change)
    smtp_host: str = ""  # empty: mail disabled
    smtp_port: int = 587
    smtp_tls: str = "starttls"  # off | starttls | implicit
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_timeout: float = 10.0  # seconds per SMTP network step
    mail_sender_address: str = "noreply@example.com"
    mail_sender_name: str = "Shipyard"
    mail_templates_dir: str = ""  # empty: built-in templates only
    app_url: str = "http://127.0.0.1:8090"  # public base URL used in mailed links
    app_name: str = "Shipyard"
    # account mails requested per window (docs/mail.md): past the address's share nothing
    # more is sent (the answer stays 204); past the client address's share, 429 for any
    account_mail_max_per_address: int = 3
    account_mail_max_per_ip: int = 20
    account_mail_window: int = 900  # seconds
    # response cache (docs/caching.md)
    cache: str = "auto"  # auto | off
    cache_ttl: int = 300  # seconds an entry may live; writes invalidate it sooner
    cache_ttls: str = ""  # per collection, e.g. "posts=30,audit_log=0" (0: never cache)
    cache_max_bytes: int = 64 * 1024 * 1024  # memory for cached responses, per process
    cache_max_entry_bytes: int = 1024 * 1024  # larger responses are not cached
    redis_url: str = ""  # redis://… shares cache coherence between processes and machines
    redis_namespace: str = "shipyard"  # key prefix: deployments sharing one Redis differ here
    redis_timeout: float = 0.25  # seconds per Redis command before treating it as down
    redis_retry_interval: float = 1.0  # seconds between reconnect attempts while down
    # background jobs and functions (docs/jobs.md)
    hooks: str = ""  # the team's hooks module: a file path (hooks.py) or a module name
    # the team's extensions (docs/architecture.md): "package.module:factory", comma-separated
    extensions: str = ""
    jobs_worker: bool = True  # run a job worker inside every `shipyard serve` process
    jobs_concurrency: int = 10  # jobs one worker process runs at once
    jobs_queues: str = ""  # queues a worker serves, comma-separated; empty: all
    jobs_lease: float = 30.0  # seconds a claimed job is held without a renewal
    jobs_poll_interval: float = 1.0  # seconds between checks when no wake-up arrives
    jobs_max_attempts: int = 10  # default attempts per job before it is discarded
    jobs_backoff_base: float = 2.0  # seconds before the first retry; doubles each attempt
    jobs_backoff_max: float = 3600.0  # longest wait between attempts
    jobs_retention: int = 86400  # seconds completed and cancelled jobs are kept
    jobs_discarded_retention: int = 7 * 86400  # seconds discarded (dead-letter) jobs are kept
    jobs_shutdown_grace: float = 10.0  # seconds running jobs get to finish on shutdown
    functions_timeout: float = 60.0  # default wall-time limit per attempt, seconds
    functions_isolated: bool = False  # run every user function in a subprocess by default
    functions_memory_mb: int = 512  # memory limit of an isolated function
    # outgoing webhooks
    webhook_timeout: float = 10.0  # seconds per delivery request
    webhook_max_attempts: int = 8  # deliveries tried before the event is dead-lettered
    webhook_backoff_base: float = 10.0  # seconds before the first retry; doubles each attempt
    webhook_allow_private: str = ""  # hosts/CIDRs allowed although private or loopback
    exports_dir: str = ""  # where export_collection writes; empty: <data_dir>/exports
    cors_origins: str = "*"  # CORS (docs/https.md): "*" or origins, comma-separated
    cors_methods: str = "GET,HEAD,PUT,PATCH,POST,DELETE"
    cors_headers: str = ""  # allowed request headers; empty: whatever a preflight asks for
    cors_expose_headers: str = ""  # response headers scripts on other origins may read
    cors_credentials: bool = False  # cookies/HTTP auth cross-origin; needs listed origins
    cors_max_age: int = 0  # seconds a browser may keep a preflight's answer; 0: not sent
    security_headers: bool = True  # on every response (docs/https.md); "" leaves one out
    content_security_policy: str = "default-src 'none'; frame-ancestors 'none'"
    referrer_policy: str = "no-referrer"
    frame_options: str = "DENY"
    cross_origin_resource_policy: str = "same-origin"
    cross_origin_opener_policy: str = "same-origin"
    hsts_max_age: int = 31536000  # seconds, on responses to HTTPS requests; 0: no HSTS
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    tls_cert: str = ""  # HTTPS served by Shipyard (docs/https.md): PEM files, or generated
    tls_key: str = ""
    tls_self_signed: bool = False  # a certificate for local use, kept in <data_dir>/tls
    tls_min_version: str = "1.2"  # 1.2 | 1.3
    redirect_http_port: int = 0  # a plain-HTTP listener redirecting to HTTPS; 0: none
    # reverse proxies whose X-Forwarded-For / Forwarded / X-Real-IP are believed (CIDRs,
    # comma-separated; docs/production.md); empty: none, the peer address is the client
    trusted_proxies: str = ""
    # overload and slow clients (docs/limits.md)
    max_in_flight: int = 256  # requests one process works on at once; more get a fast 503
    max_queue_delay_ms: int = 100  # how far the event loop may fall behind; then 503; 0: off
    overload_retry_after: int = 1  # seconds, the Retry-After of that 503
    max_url_length: int = 16384  # bytes of path and query; longer gets 414
    max_header_size: int = 32768  # bytes of all header names and values; more gets 431
    header_timeout: float = 10.0  # seconds to send a request's headers; also the keep-alive idle
    body_timeout: float = 30.0  # seconds a request body may pause between two chunks; then 408
    keep_alive: bool = True  # HTTP/1.1 persistent connections
    # rate limits (docs/ratelimit.md), PocketBase's `rateLimits` settings
    ratelimit_enabled: bool = True
    # JSON list of {label, audience, duration, maxRequests}; empty: defaults
    ratelimit_rules: str = ""
    ratelimit_excluded_ips: str = ""  # client addresses and CIDRs never limited, comma-separated
    ratelimit_exempt_superusers: bool = True
    # clients a process tracks in memory (no Redis, or Redis down)
    ratelimit_max_keys: int = 100_000
    ratelimit_refresh_interval: float = 1.0  # seconds between checks for /api/settings changes
    s3_enabled: bool = False  # the `s3` section of /api/settings, as PocketBase
    s3_bucket: str = ""
    s3_region: str = ""
    s3_endpoint: str = ""  # empty: AWS; http(s)://host:port for any S3-compatible store
    s3_access_key: str = ""
    s3_secret: str = field(default="", repr=False)
    s3_force_path_style: bool = False
    # where each value set at start-up came from ("SHIPYARD_SMTP_HOST", "smtp_host in
    # shipyard.toml", an option): the runtime settings API shows those as read-only, since
    # they win over the values it stores (docs/settings-api.md). Filled by load_settings.
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def exports_path(self) -> Path:
        return Path(self.exports_dir) if self.exports_dir else self.data_dir / "exports"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "data.db"

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))


_POSITIVE_INTS = {
    "port",
    "workers",
    "max_body_size",
    "max_per_page",
    "default_per_page",
    "max_filter_length",
    "max_filter_expressions",
    "max_expand_depth",
    "max_sort_fields",
    "db_pool_max",
    "superuser_token_duration",
    "auth_max_failures_per_identity",
    "auth_max_failures_per_ip",
    "auth_failure_window",
    "password_hash_concurrency",
    "smtp_port",
    "account_mail_max_per_address",
    "account_mail_max_per_ip",
    "account_mail_window",
    "cache_max_bytes",
    "cache_max_entry_bytes",
    "jobs_concurrency",
    "jobs_max_attempts",
    "jobs_retention",
    "jobs_discarded_retention",
    "functions_memory_mb",
    "webhook_max_attempts",
    "logs_queue_max",
    "alerts_delivery_attempts",
    "alerts_history_retention",
    "max_in_flight",
    "overload_retry_after",
    "max_url_length",
    "max_header_size",
    "ratelimit_max_keys",
    "image_max_pixels",
    "thumbs_concurrency",
    "files_max_upload_size",
    "files_token_duration",
}


def _env_name(name: str) -> str:
    return "SHIPYARD_" + name.upper()


def _convert(name: str, raw: Any, target: Any, label: str) -> Any:
    try:
        if target is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if target is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(str(raw).strip())
        if target is float:
            return float(str(raw).strip())
        if target is Path:
            return Path(str(raw)).expanduser()
        if isinstance(raw, dict | list):  # a table in the file (alerts_rules): its JSON
            return json.dumps(raw, default=str)
        return str(raw)
    except ValueError:
        kind = {bool: "a boolean", int: "an integer", float: "a number"}.get(target, "a value")
        raise SettingsError(f"{label}: expected {kind}, got {raw!r}") from None


_TYPES = {"Path": Path, "str": str, "int": int, "float": float, "bool": bool}
_ENV_NAME_RE = re.compile(r"SHIPYARD_[A-Z0-9_]*[A-Z0-9]")


def _file_label(name: str, path: Path) -> str:
    return f"{name} in {path}"


def _read_toml(path: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """The settings a TOML file sets; every problem with it names the file."""
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the settings file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not valid TOML (the file is not UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from None
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in fields:
            raise SettingsError(f"{_file_label(key, path)}: unknown setting")
        values[key] = _convert(key, raw, fields[key], _file_label(key, path))
    return values


def load_settings(
    env: Mapping[str, str] | None = None,
    toml_path: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings: defaults < settings file < SHIPYARD_* env < explicit overrides (CLI flags).

    The settings file is `toml_path`, else the one `SHIPYARD_CONFIG` names (which must exist),
    else `shipyard.toml` in the working directory when there is one.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    fields = {
        f.name: _TYPES[str(f.type)] for f in dataclasses.fields(Settings) if f.name != "sources"
    }

    named = toml_path or (Path(env["SHIPYARD_CONFIG"]) if env.get("SHIPYARD_CONFIG") else None)
    path = named or Path("shipyard.toml")
    if named is not None and not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise SettingsError(f"SHIPYARD_CONFIG: the settings file {path} {what}")
    from_file: set[str] = set()
    sources: dict[str, str] = {}
    if path.is_file():
        values.update(_read_toml(path, fields))
        from_file = set(values)
        sources = {name: _file_label(name, path) for name in values}

    for name, target in fields.items():
        raw = env.get(_env_name(name))
        if raw is not None:
            values[name] = _convert(name, raw, target, _env_name(name))
            from_file.discard(name)
            sources[name] = _env_name(name)

    for name, raw in overrides.items():
        if raw is None:
            continue
        if name not in fields:
            raise SettingsError(f"{name}: unknown setting")
        values[name] = _convert(name, raw, fields[name], _env_name(name))
        from_file.discard(name)
        sources[name] = f"the start-up option {name}"

    settings = Settings(**values, sources=sources)
    try:
        _validate(settings)
    except SettingsError as exc:
        raise _naming_file(exc, from_file, path) from None
    return settings


def _naming_file(exc: SettingsError, from_file: set[str], path: Path) -> SettingsError:
    """Say `port in /etc/app.toml` rather than `SHIPYARD_PORT` for a value the file set."""

    def label(m: re.Match[str]) -> str:
        name = m.group(0).removeprefix("SHIPYARD_").lower()
        return _file_label(name, path) if name in from_file else m.group(0)

    return SettingsError(_ENV_NAME_RE.sub(label, str(exc)))


def _validate(s: Settings) -> None:  # noqa: C901  (one independent check per setting)
    for name in _POSITIVE_INTS:
        if getattr(s, name) <= 0:
            raise SettingsError(f"{_env_name(name)}: must be greater than 0")
    if s.port > 65535:
        raise SettingsError("SHIPYARD_PORT: must be at most 65535")
    if s.default_per_page > s.max_per_page:
        raise SettingsError("SHIPYARD_DEFAULT_PER_PAGE: must not exceed SHIPYARD_MAX_PER_PAGE")
    if s.db_pool_min < 0 or s.db_pool_min > s.db_pool_max:
        raise SettingsError("SHIPYARD_DB_POOL_MIN: must be between 0 and SHIPYARD_DB_POOL_MAX")
    if not s.db_pool_max_idle > 0:
        raise SettingsError("SHIPYARD_DB_POOL_MAX_IDLE: must be greater than 0")
    if s.db_statement_timeout_ms < 0:
        raise SettingsError("SHIPYARD_DB_STATEMENT_TIMEOUT_MS: must be 0 (no limit) or more")
    if s.query_budget_ms < 0:
        raise SettingsError("SHIPYARD_QUERY_BUDGET_MS: must be 0 (no limit) or more")
    for name in ("max_filter_collection_joins", "max_filter_back_relations"):
        if getattr(s, name) < 0:
            raise SettingsError(f"{_env_name(name)}: must be 0 (none allowed) or more")
    if not s.slow_query_ms >= 0:  # also refuses nan
        raise SettingsError("SHIPYARD_SLOW_QUERY_MS: must be 0 (off) or more milliseconds")
    if s.database_url and not (s.is_postgres or s.database_url.startswith("sqlite:")):
        raise SettingsError(
            "SHIPYARD_DATABASE_URL: must start with postgresql:// (or sqlite:///path), "
            "got a URL with another scheme"
        )
    if s.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise SettingsError("SHIPYARD_LOG_LEVEL: must be one of debug, info, warning, error")
    if s.smtp_port > 65535:
        raise SettingsError("SHIPYARD_SMTP_PORT: must be at most 65535")
    if s.smtp_tls not in ("off", "starttls", "implicit"):
        raise SettingsError("SHIPYARD_SMTP_TLS: must be one of off, starttls, implicit")
    if not s.smtp_timeout > 0:
        raise SettingsError("SHIPYARD_SMTP_TIMEOUT: must be greater than 0")
    if s.cache not in ("auto", "off"):
        raise SettingsError("SHIPYARD_CACHE: must be auto or off")
    if s.cache_ttl < 0:
        raise SettingsError("SHIPYARD_CACHE_TTL: must be 0 or more seconds")
    parse_ttls(s.cache_ttls)
    if s.redis_url and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("SHIPYARD_REDIS_URL: must start with redis://, rediss:// or unix://")
    if not (s.redis_timeout > 0 and s.redis_retry_interval > 0):
        raise SettingsError(
            "SHIPYARD_REDIS_TIMEOUT and SHIPYARD_REDIS_RETRY_INTERVAL: must be greater than 0"
        )
    for name in (
        "jobs_lease",
        "jobs_poll_interval",
        "jobs_backoff_base",
        "jobs_backoff_max",
        "functions_timeout",
        "webhook_timeout",
        "webhook_backoff_base",
    ):
        if not getattr(s, name) > 0:  # also refuses nan
            raise SettingsError(f"{_env_name(name)}: must be greater than 0")
    if not s.jobs_shutdown_grace >= 0:
        raise SettingsError("SHIPYARD_JOBS_SHUTDOWN_GRACE: must be 0 or more seconds")
    if s.jobs_lease < 3:
        raise SettingsError("SHIPYARD_JOBS_LEASE: must be at least 3 seconds")
    if s.jobs_retention < 600:
        raise SettingsError(
            "SHIPYARD_JOBS_RETENTION: must be at least 600 seconds (cron ticks are deduplicated "
            "by the jobs kept)"
        )
    if s.functions_memory_mb < 64:
        raise SettingsError("SHIPYARD_FUNCTIONS_MEMORY_MB: must be at least 64")
    for name in ("errors_max_body_size", "errors_max_uncompressed_size", "errors_retention_days",
                 "errors_queue_size"):  # fmt: skip
        if getattr(s, name) <= 0:
            raise SettingsError(f"{_env_name(name)}: must be greater than 0")
    if s.errors_rate_limit < 0:
        raise SettingsError("SHIPYARD_ERRORS_RATE_LIMIT: must be 0 (no limit) or more")
    parse_allow_list(s.webhook_allow_private)
    _validate_edge(s)  # CORS, security headers, TLS (docs/https.md)
    if not (0.05 <= s.metrics_flush_interval <= 3600):  # also refuses nan
        raise SettingsError("SHIPYARD_METRICS_FLUSH_INTERVAL: must be 0.05..3600 seconds")
    parse_networks(s.metrics_allow, "SHIPYARD_METRICS_ALLOW")
    parse_networks(s.trusted_proxies, "SHIPYARD_TRUSTED_PROXIES")
    _validate_limits(s)
    parse_networks(s.ratelimit_excluded_ips, "SHIPYARD_RATELIMIT_EXCLUDED_IPS")
    if not 0.05 <= s.ratelimit_refresh_interval <= 3600:  # also refuses nan
        raise SettingsError("SHIPYARD_RATELIMIT_REFRESH_INTERVAL: must be 0.05..3600 seconds")
    validate_observability(s)
    validate_media(s)
    validate_batch(s)
    validate_realtime(s)
    validate_backups(s)
    validate_http_server(s)


def _validate_limits(s: Settings) -> None:
    """The front door's limits: what the HTTP server itself can enforce bounds some of them."""
    if not 0.001 <= s.header_timeout <= 60:  # granian's range; also refuses nan
        raise SettingsError("SHIPYARD_HEADER_TIMEOUT: must be between 0.001 and 60 seconds")
    if not s.body_timeout > 0:
        raise SettingsError("SHIPYARD_BODY_TIMEOUT: must be greater than 0")
    if s.max_queue_delay_ms < 0:
        raise SettingsError("SHIPYARD_MAX_QUEUE_DELAY_MS: must be 0 (off) or more milliseconds")
    if s.max_url_length < 256:
        raise SettingsError("SHIPYARD_MAX_URL_LENGTH: must be at least 256 bytes")
    if s.max_url_length > 65000:  # the HTTP server refuses longer targets itself (414)
        raise SettingsError("SHIPYARD_MAX_URL_LENGTH: must be at most 65000 bytes")
    if s.max_header_size < 1024:
        raise SettingsError("SHIPYARD_MAX_HEADER_SIZE: must be at least 1024 bytes")


_CHOICES = {
    "referrer_policy": ("no-referrer", "no-referrer-when-downgrade", "origin", "origin-when-cross-origin", "same-origin", "strict-origin", "strict-origin-when-cross-origin", "unsafe-url", ""),
    "frame_options": ("DENY", "SAMEORIGIN", ""),
    "cross_origin_resource_policy": ("same-origin", "same-site", "cross-origin", ""),
    "cross_origin_opener_policy": ("same-origin", "same-origin-allow-popups", "noopener-allow-popups", "unsafe-none", ""),
    "tls_min_version": ("1.2", "1.3"),
}  # fmt: skip
_TOKENS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*")


def _validate_edge(s: Settings) -> None:
    origins = parse_origins(s.cors_origins)
    for name in ("cors_methods", "cors_headers", "cors_expose_headers"):
        value = getattr(s, name).strip()
        if value and not _TOKENS.fullmatch(value):
            raise SettingsError(f"{_env_name(name)}: expected comma-separated header tokens")
    if s.cors_credentials and "*" in origins:  # any site could act as the user
        raise SettingsError("SHIPYARD_CORS_CREDENTIALS: needs listed SHIPYARD_CORS_ORIGINS, not *")
    for name, choices in _CHOICES.items():
        if getattr(s, name) not in choices:
            shown = ", ".join(c for c in choices if c) + (" (or empty)" if "" in choices else "")
            raise SettingsError(f"{_env_name(name)}: must be one of {shown}")
    if not re.fullmatch(r"[\x20-\x7e]*", s.content_security_policy):
        raise SettingsError("SHIPYARD_CONTENT_SECURITY_POLICY: must be printable ASCII, one line")
    for name in ("cors_max_age", "hsts_max_age"):
        if getattr(s, name) < 0:
            raise SettingsError(f"{_env_name(name)}: must be 0 (not sent) or more seconds")
    _validate_tls(s)


def _validate_tls(s: Settings) -> None:
    if bool(s.tls_cert) != bool(s.tls_key):
        raise SettingsError("SHIPYARD_TLS_CERT and SHIPYARD_TLS_KEY: set both or neither")
    if s.tls_cert and s.tls_self_signed:
        raise SettingsError("SHIPYARD_TLS_SELF_SIGNED: not with SHIPYARD_TLS_CERT (choose one)")
    port = s.redirect_http_port
    if not 0 <= port <= 65535 or port == s.port:
        raise SettingsError("SHIPYARD_REDIRECT_HTTP_PORT: 0 or a port other than SHIPYARD_PORT")
    if port and not (s.tls_cert or s.tls_self_signed):
        raise SettingsError("SHIPYARD_REDIRECT_HTTP_PORT: needs SHIPYARD_TLS_CERT or _SELF_SIGNED")


__all__ = [
    "Settings",
    "SettingsError",
    "load_settings",
    "parse_allow_list",
    "parse_image_formats",
    "parse_image_widths",
    "parse_networks",
    "parse_origins",
    "parse_ttls",
]
