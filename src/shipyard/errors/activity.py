"""What error tracking tells the alerting capability: the issues that appeared or came
back, and how many events were stored, since a moment (epoch seconds).

The alerts package (one level above) reads `ErrorsExtension.tracker.activity(since)`;
these types are its contract, so their names and fields stay put.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class IssueSummary:
    """One issue as alerts show it. Times are epoch seconds."""

    id: str
    project: str  # the project's name
    title: str
    level: str
    count: int
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class ErrorActivity:
    """Since a moment: issues first seen, issues that regressed (a resolved issue that
    received an event), and the number of events stored (all projects)."""

    new_issues: list[IssueSummary] = field(default_factory=list)
    regressions: list[IssueSummary] = field(default_factory=list)
    events: int = 0


class ActivitySource(Protocol):
    async def activity(self, since: float) -> ErrorActivity: ...


__all__ = ["ActivitySource", "ErrorActivity", "IssueSummary"]
