"""Maintenance windows: when the disruptive steps may start.

A window opens at every time its cron expression (``window_cron``, e.g. ``0 2 * * SUN``) names, in its
IANA time zone (``window_timezone``), and lasts ``window_minutes`` of elapsed time. No cron expression
means no window: every step may run at any time.

Rules:
- The cron expression is read as wall-clock time in the zone. A start that falls in a daylight-saving
  gap (02:30 on the night clocks jump from 02:00 to 03:00) opens at the same offset after the jump
  (03:30); a start that falls twice (the night clocks go back) opens at the first of the two. The length
  is elapsed time, so a 120-minute window across a change still lasts two hours.
- Overlapping windows are not merged: the current window is the one that opened last.
- A batch fits when its estimate (the longest batch so far) ends before the window closes. One estimated
  longer than a whole window could never fit: it starts in the first half of a window instead.

Pure functions on aware datetimes: no clock is read here (callers pass ``now``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from cilium_migration.errors import PermanentError

MAX_MINUTES = 7 * 24 * 60  # a week: longer is no window at all
_SLACK = timedelta(hours=3)  # wall clock vs UTC: more than any daylight-saving shift


@dataclass(frozen=True)
class Window:
    """A recurring maintenance window."""

    cron: str
    minutes: int
    timezone: str = "UTC"

    @property
    def length(self) -> timedelta:
        return timedelta(minutes=self.minutes)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _starts(self, around: datetime, *, forward: bool) -> Iterator[datetime]:
        """Window starts in UTC, from a little before (forward) or after (backward) ``around``."""
        local = around.astimezone(self.tz).replace(tzinfo=None)
        it = croniter(self.cron, local - _SLACK if forward else local + _SLACK)
        while True:
            wall = it.get_next(datetime) if forward else it.get_prev(datetime)
            yield wall.replace(tzinfo=self.tz).astimezone(UTC)

    def last_start(self, now: datetime) -> datetime:
        """The latest start at or before ``now``."""
        best: datetime | None = None
        for start in self._starts(now, forward=False):
            if start <= now and (best is None or start > best):
                best = start
            if best is not None and start < best - _SLACK:
                return best
        raise AssertionError("unreachable: croniter's iterator is endless")

    def next_start(self, now: datetime) -> datetime:
        """The first start strictly after ``now``."""
        best: datetime | None = None
        for start in self._starts(now, forward=True):
            if start > now and (best is None or start < best):
                best = start
            if best is not None and start > best + _SLACK:
                return best
        raise AssertionError("unreachable: croniter's iterator is endless")

    def current(self, now: datetime) -> tuple[datetime, datetime] | None:
        """(start, end) of the window open at ``now``, or None outside every window."""
        start = self.last_start(now)
        end = start + self.length
        return (start, end) if now < end else None

    def is_open(self, now: datetime) -> bool:
        return self.current(now) is not None

    def closes_at(self, now: datetime) -> datetime | None:
        """When the window open at ``now`` closes (None outside)."""
        window = self.current(now)
        return window[1] if window else None

    def fits(self, now: datetime, estimate_s: float | None) -> bool:
        """Whether a batch estimated at ``estimate_s`` seconds may start at ``now``: inside a window and
        done before it closes (no estimate yet: inside is enough)."""
        window = self.current(now)
        if window is None:
            return False
        if not estimate_s:
            return True
        left = (window[1] - now).total_seconds()
        if estimate_s > self.length.total_seconds():  # never fits: start early in a window
            return left >= self.length.total_seconds() / 2
        return estimate_s <= left

    def local(self, moment: datetime) -> str:
        """``moment`` as wall-clock time in the window's zone, e.g. ``2026-12-06 02:00 CET (Europe/Paris)``."""
        return f"{moment.astimezone(self.tz):%Y-%m-%d %H:%M %Z} ({self.timezone})"

    def describe(self, now: datetime) -> str:
        """One line for logs and approval bodies: the window, and whether it is open at ``now``."""
        what = f"maintenance window `{self.cron}` for {self.minutes} min ({self.timezone})"
        window = self.current(now)
        if window:
            return f"{what}: open now, closes at {self.local(window[1])}"
        return f"{what}: closed now, next opens at {self.local(self.next_start(now))}"

    def to_params(self) -> dict[str, Any]:
        return {"window_cron": self.cron, "window_minutes": self.minutes, "window_timezone": self.timezone}


def from_params(params: Mapping[str, Any]) -> Window | None:
    """The window of the run's params (``window_cron``, ``window_minutes``, ``window_timezone``), or
    None when ``window_cron`` is empty; ``PermanentError`` naming the field otherwise."""
    cron = params.get("window_cron")
    if cron is None or (isinstance(cron, str) and not cron.strip()):
        return None
    if not isinstance(cron, str):
        raise PermanentError(f"window_cron: must be a cron expression such as '0 2 * * SUN', got {cron!r}")
    cron = " ".join(cron.split())
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise PermanentError(f"window_cron: {cron!r} is not a cron expression of five fields (minute hour "
                             "day-of-month month day-of-week), such as '0 2 * * SUN'")
    minutes = params.get("window_minutes")
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 < minutes <= MAX_MINUTES:
        raise PermanentError(f"window_minutes: the window's length must be a whole number of minutes from 1 to "
                             f"{MAX_MINUTES}, got {minutes!r}")
    tz = params.get("window_timezone") or "UTC"
    if not isinstance(tz, str):
        raise PermanentError(f"window_timezone: must be an IANA time zone name such as 'Europe/Paris', got {tz!r}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise PermanentError(f"window_timezone: {tz!r} is not an IANA time zone name (such as 'UTC', "
                             "'Europe/Paris', 'America/New_York')") from exc
    window = Window(cron, minutes, tz)
    try:
        window.next_start(datetime.now(UTC))
    except Exception as exc:  # e.g. '0 0 30 2 *': valid syntax, no such day
        raise PermanentError(f"window_cron: {cron!r} never matches a date ({exc})") from exc
    return window


ENV_CRON, ENV_MINUTES, ENV_TIMEZONE, ENV_PARAMS = (
    "CILIUM_MIGRATION_WINDOW_CRON", "CILIUM_MIGRATION_WINDOW_MINUTES", "CILIUM_MIGRATION_WINDOW_TIMEZONE",
    "CILIUM_MIGRATION_PARAMS")


def from_environment(env: Mapping[str, str] | None = None) -> tuple[Window | None, dict[str, Any]]:
    """The scheduled DAG's window and migration params from ``CILIUM_MIGRATION_*`` (default: ``os.environ``);
    ValueError naming the variable."""
    import json
    import os

    env = os.environ if env is None else env
    try:
        params = json.loads(env.get(ENV_PARAMS) or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ENV_PARAMS}: not JSON ({exc})") from exc
    if not isinstance(params, dict):
        raise ValueError(f"{ENV_PARAMS}: must be a JSON object of the migration's params")
    minutes = env.get(ENV_MINUTES) or "120"
    try:
        window = from_params({"window_cron": env.get(ENV_CRON, ""),
                              "window_minutes": int(minutes) if minutes.strip().isdigit() else minutes,
                              "window_timezone": env.get(ENV_TIMEZONE) or "UTC"})
    except Exception as exc:
        raise ValueError(f"{ENV_CRON} / {ENV_MINUTES} / {ENV_TIMEZONE}: {exc}") from exc
    return window, params
