"""Change records: every write the migration makes, with its before and after.

A ``Change`` becomes one task-log line and one entry of the task's ``changes`` XCom; the audit
report task collects the run's changes into a Markdown report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

XCOM_KEY = "changes"

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Change:
    """One write (or would-be write, when ``dry_run``) to the cluster or to EKS.

    ``action`` is a verb (create, patch, delete, scale, evict, label, cordon, uncordon, install, ...);
    ``before``/``after`` hold only the fields that changed (small, JSON-serialisable).
    """

    action: str
    kind: str
    name: str
    namespace: str | None = None
    before: Any = None
    after: Any = None
    dry_run: bool = False
    at: str = field(default_factory=_now)

    @property
    def target(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    def log_line(self) -> str:
        prefix = "[dry run] would " if self.dry_run else ""
        return (f"{prefix}{self.action} {self.target}: before={_compact(self.before)} "
                f"after={_compact(self.after)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def log_changes(changes: Iterable[Change], logger: Any = None) -> list[dict[str, Any]]:
    """Log each change on its own line; return them as dicts for the XCom."""
    out = []
    for change in changes:
        (logger or log).info("CHANGE %s", change.log_line())
        out.append(change.to_dict())
    return out


def report(changes_by_task: Mapping[str, Iterable[Mapping[str, Any]]], *, outcome: str,
           run_id: str = "", task_states: Mapping[str, str] | None = None) -> str:
    """The run's audit report in Markdown: outcome, then every change in task order."""
    lines = [f"# Cilium migration audit report {run_id}".rstrip(), "", f"**Outcome:** {outcome}", ""]
    if task_states:
        failed = sorted(t for t, s in task_states.items() if s in ("failed", "upstream_failed"))
        if failed:
            lines += ["**Failed tasks:** " + ", ".join(failed), ""]
    total = 0
    lines += ["| task | action | target | before | after | dry run |", "|---|---|---|---|---|---|"]
    for task_id, changes in changes_by_task.items():
        for raw in changes or []:
            c = Change.from_dict(raw)
            total += 1
            lines.append(f"| {task_id} | {c.action} | {c.target} | `{_compact(c.before)}` | "
                         f"`{_compact(c.after)}` | {'yes' if c.dry_run else 'no'} |")
    lines += ["", f"{total} change(s)."]
    return "\n".join(lines)
