"""The realtime part of the settings (PocketBase's `/api/realtime` SSE): a base of
`Settings`, kept apart so that settings.py stays one screen per concern."""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.tools.settings_parse import SettingsError


@dataclass(frozen=True)
class RealtimeSettings:
    # realtime (docs/realtime.md)
    realtime_enabled: bool = True  # off: /api/realtime is 404 and writes publish nothing
    realtime_max_connections: int = 1000  # open SSE connections per process; more get 503
    realtime_buffer: int = 256  # events waiting for one slow client; one more disconnects it
    realtime_send_timeout: float = 10.0  # seconds one write to a client may block: then cut
    realtime_idle_timeout: float = 300.0  # seconds without an event before the stream ends
    realtime_poll_interval: float = 0.05  # seconds between SQLite checks for other processes
    realtime_retention: float = 60.0  # seconds an event stays in the SQLite / large-event outbox


def validate_realtime(s: RealtimeSettings) -> None:
    if not 1 <= s.realtime_max_connections <= 1_000_000:
        raise SettingsError("SHIPYARD_REALTIME_MAX_CONNECTIONS: must be 1..1000000")
    if not 1 <= s.realtime_buffer <= 100_000:
        raise SettingsError("SHIPYARD_REALTIME_BUFFER: must be 1..100000 events")
    for name, lo, hi in (
        ("realtime_send_timeout", 0.1, 3600.0),
        ("realtime_idle_timeout", 0.1, 86400.0),
        ("realtime_poll_interval", 0.005, 10.0),
        ("realtime_retention", 5.0, 86400.0),
    ):
        if not lo <= getattr(s, name) <= hi:  # also refuses nan
            raise SettingsError(f"SHIPYARD_{name.upper()}: must be {lo:g}..{hi:g} seconds")
