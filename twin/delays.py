"""The delays the twin imposes, as intervals, and the critical path of a run computed from them.

Rules:
- A controller records a delay when the thing it delayed happens: a node registers (``node-boot``: the
  node group grew, EC2 launched and booted the instance, the kubelet registered), a pod starts
  (``pod-start``; ``agent-start`` for a CNI agent pod), a node turns Ready once its CNI agent runs
  (``node-ready``), the cilium-operator removes the ``agent-not-ready`` taint (``taint-removal``), a
  drained node is deleted (``node-drain``), an EKS managed add-on change is applied (``addon-update``).
- A delay's interval is the wait the twin imposed: it starts when the wait began (the node group grew,
  the pod could be started, ...) and lasts exactly the configured duration (``twin.config.Timing``, plus
  any ``slow_provisioning_s`` fault). The few milliseconds a controller takes to notice that a wait is
  over are the twin's own latency, not a delay a real cluster imposes, and are left out.
- Not recorded: goldpinger's ping rounds (they run all the time, whether anyone waits or not) and the
  controllers' resync period (an implementation detail of the twin).
- Times are wall-clock seconds since the epoch, so they compare with Airflow's dates.

The critical path of a run (``critical_path``) is the union over time of the imposed delays inside the
run's window: the time during which at least one delay the twin imposed was in progress. The migration
must wait out each of these delays (a node cannot be Ready before it boots, a pod cannot run before its
node is Ready, the next phase waits for the pods), and delays that overlap are waited out together, so
no orchestrator could finish faster than this. Wall time outside every delay is orchestration overhead
(scheduling, polling, the DAG's own work). Each merged segment keeps the delays it came from, which
reads as the chain: node boot -> agent start -> node Ready -> taint removal -> pod starts -> ... .
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("node-boot", "agent-start", "node-ready", "taint-removal", "pod-start", "node-drain",
         "addon-update")


@dataclass(frozen=True)
class Delay:
    """One imposed wait: ``kind`` of ``subject`` from ``start`` for ``duration_s`` (epoch seconds)."""

    kind: str
    subject: str
    start: float
    duration_s: float
    waiting_on: str = ""

    @property
    def end(self) -> float:
        return self.start + self.duration_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "end": self.end}


@dataclass
class Segment:
    """A stretch of time during which at least one imposed delay was in progress."""

    start: float
    end: float
    delays: list[Delay] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.end - self.start

    def summary(self) -> str:
        """The kinds of delay in this segment, in the order they began, with counts: ``3 node-boot, ...``."""
        counts: dict[str, int] = {}
        for d in sorted(self.delays, key=lambda d: d.start):
            counts[d.kind] = counts.get(d.kind, 0) + 1
        return ", ".join(f"{n} {kind}" for kind, n in counts.items())

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "duration_s": self.duration_s, "summary": self.summary(),
                "delays": [d.to_dict() for d in self.delays]}


@dataclass
class CriticalPath:
    """The union of imposed delays in a window: ``total_s`` and the merged ``segments``."""

    since: float | None
    until: float | None
    segments: list[Segment]

    @property
    def total_s(self) -> float:
        return sum(s.duration_s for s in self.segments)

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "total_s": self.total_s,
                "definition": "union over time of the delays the twin imposed, clipped to [since, until]",
                "segments": [s.to_dict() for s in self.segments]}


def critical_path(delays: Iterable[Delay], *, since: float | None = None,
                  until: float | None = None) -> CriticalPath:
    """Merge the delays' intervals, clipped to ``[since, until]``, into disjoint segments.

    Intervals that overlap or touch merge into one segment; zero-length delays (and those wholly outside
    the window) add no time and are left out.
    """
    clipped: list[tuple[float, float, Delay]] = []
    for d in delays:
        start = d.start if since is None else max(d.start, since)
        end = d.end if until is None else min(d.end, until)
        if end > start:
            clipped.append((start, end, d))
    clipped.sort(key=lambda item: (item[0], item[1]))
    segments: list[Segment] = []
    for start, end, d in clipped:
        if segments and start <= segments[-1].end:
            segments[-1].end = max(segments[-1].end, end)
            segments[-1].delays.append(d)
        else:
            segments.append(Segment(start, end, [d]))
    return CriticalPath(since, until, segments)


class DelayLog:
    """Thread-safe record of imposed delays; controllers measure with ``time.monotonic()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Delay] = []
        self._offset = time.time() - time.monotonic()  # monotonic -> epoch

    def record(self, kind: str, subject: str, *, started: float, duration_s: float,
               waiting_on: str = "") -> Delay:
        """Record a delay that began at monotonic time ``started`` and lasted ``duration_s``."""
        delay = Delay(kind, subject, started + self._offset, max(0.0, duration_s), waiting_on)
        with self._lock:
            self._items.append(delay)
        return delay

    def items(self, *, since: float | None = None, until: float | None = None) -> list[Delay]:
        """The delays that overlap ``[since, until]`` (epoch seconds), in the order they began."""
        with self._lock:
            items = list(self._items)
        return sorted((d for d in items if (since is None or d.end >= since) and (until is None or d.start <= until)),
                      key=lambda d: d.start)

    def critical_path(self, *, since: float | None = None, until: float | None = None) -> CriticalPath:
        return critical_path(self.items(since=since, until=until), since=since, until=until)
