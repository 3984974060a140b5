"""Change records: every write the migration makes, with its before and after.

A ``Change`` becomes one task-log line and one entry of the task's ``changes`` XCom; the audit
report task collects the run's changes into a Markdown report.
"""

from __future__ import annotations

import hashlib
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


# ---- changes of whole objects (Helm releases) ----------------------------------------------------------

SECRET_KINDS = frozenset({"Secret"})
_NOT_OWNED = ("apiVersion", "kind", "metadata", "status")


def fingerprint(value: Any) -> str:
    """A short, one-way stand-in for a secret value: ``sha256:`` and 12 hex digits."""
    return "sha256:" + hashlib.sha256(str(value).encode()).hexdigest()[:12]


def redacted(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The object as a change record may show it: a Secret's ``data`` and ``stringData`` keep their keys,
    each value replaced by its ``fingerprint``. Every other kind is returned as it is. This is the one
    place where Secret values are dropped: every change of a whole object goes through it."""
    if obj is None:
        return None
    out = dict(obj)
    if obj.get("kind") in SECRET_KINDS:
        for key in ("data", "stringData"):
            if isinstance(obj.get(key), Mapping):
                out[key] = {k: fingerprint(v) for k, v in obj[key].items()}
    return out


def owned_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a writer owns of an object: labels, annotations, and every top-level field but apiVersion,
    kind, metadata and status (spec, data, rules, subjects, roleRef...)."""
    meta = obj.get("metadata") or {}
    owned: dict[str, Any] = {"metadata": {"labels": dict(meta.get("labels") or {}),
                                          "annotations": dict(meta.get("annotations") or {})}}
    owned.update({k: v for k, v in obj.items() if k not in _NOT_OWNED})
    return owned


def differences(before: Any, after: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, before, after) for every leaf that differs; maps are compared key by key in both
    directions, anything else (lists included) as a whole."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(set(before) | set(after), key=str):
            out += differences(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if before == after else [(path, before, after)]


def object_change(kind: str, name: str, namespace: str | None, before: Mapping[str, Any] | None,
                  after: Mapping[str, Any] | None, *, dry_run: bool = False) -> Change:
    """The change from ``before`` to ``after`` (either may be None: created, deleted) of one object.

    ``create``/``delete`` record the resourceVersion (and a Secret's keys with fingerprints); ``patch``
    records only the paths that changed; ``unchanged`` when the owned fields are equal. Secrets are
    ``redacted`` first, so no value of theirs can reach a log, an XCom or the report."""
    b, a = redacted(before), redacted(after)

    def summary(obj: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceVersion": (obj.get("metadata") or {}).get("resourceVersion")}
        if kind in SECRET_KINDS:
            out["data"] = obj.get("data") or {}
        return out

    if b is None and a is None:
        return Change("unchanged", kind, name, namespace, None, None, dry_run)
    if b is None:
        return Change("create", kind, name, namespace, None, summary(a or {}), dry_run)
    if a is None:
        return Change("delete", kind, name, namespace, summary(b), None, dry_run)
    diff = differences(owned_fields(b), owned_fields(a))
    if not diff:
        return Change("unchanged", kind, name, namespace, None, None, dry_run)
    return Change("patch", kind, name, namespace, {p: x for p, x, _ in diff}, {p: y for p, _, y in diff},
                  dry_run)


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
    """The run's audit report in Markdown: outcome, then every change in task order, each with the try
    of the task that made it."""
    lines = [f"# Cilium migration audit report {run_id}".rstrip(), "", f"**Outcome:** {outcome}", ""]
    if task_states:
        failed = sorted(t for t, s in task_states.items() if s in ("failed", "upstream_failed"))
        if failed:
            lines += ["**Failed tasks:** " + ", ".join(failed), ""]
    total = 0
    lines += ["| task | try | action | target | before | after | dry run |", "|---|---|---|---|---|---|---|"]
    for task_id, changes in changes_by_task.items():
        for raw in changes or []:
            c = Change.from_dict(raw)
            total += 1
            lines.append(f"| {task_id} | {raw.get('try', '')} | {c.action} | {c.target} | `{_compact(c.before)}` | "
                         f"`{_compact(c.after)}` | {'yes' if c.dry_run else 'no'} |")
    lines += ["", f"{total} change(s)."]
    return "\n".join(lines)
