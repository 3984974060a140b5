"""Faults the twin can inject, switchable in a scenario, over the admin endpoint, or from Python.

Controllers and the API server read this object on every pass, so a change takes effect at once.
"""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class ApiFault:
    """Answer ``count`` requests whose method and path match with ``status`` (500, 503, 429, ...)."""

    path: str  # a regular expression searched in the request path
    status: int = 503
    count: int = 3
    method: str | None = None  # None: any method

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method.upper()) and bool(
            re.search(self.path, path))


@dataclass
class Faults:
    """The switchable faults. All fields are safe to change while the twin runs."""

    agent_never_ready: list[str] = field(default_factory=list)  # node names or node-group names
    cross_cni_broken: bool = False  # pods wired by different CNIs cannot reach each other
    api: list[ApiFault] = field(default_factory=list)
    blocked_pdbs: list[str] = field(default_factory=list)  # "namespace/name": evictions always 429
    slow_provisioning_s: float = 0.0  # extra delay before new nodes register
    stuck_nodegroups: list[str] = field(default_factory=list)  # scaling never completes
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def api_error_for(self, method: str, path: str) -> int | None:
        """The status to answer instead of serving this request, consuming one from the burst."""
        with self.lock:
            for fault in self.api:
                if fault.count > 0 and fault.matches(method, path):
                    fault.count -= 1
                    return fault.status
        return None

    def agent_blocked(self, node_name: str, nodegroup: str | None) -> bool:
        return node_name in self.agent_never_ready or (nodegroup or "") in self.agent_never_ready

    def to_dict(self) -> dict[str, Any]:
        with self.lock:  # not asdict(self): it would try to deep-copy the lock
            return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "lock"}

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial dict (as the admin endpoint receives it); unknown keys raise ValueError."""
        with self.lock:
            for key, value in changes.items():
                if key == "lock" or not hasattr(self, key):
                    raise ValueError(f"unknown fault: {key}")
                if key == "api":
                    value = [ApiFault(**v) if isinstance(v, dict) else v for v in value]
                setattr(self, key, value)


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [asdict(v) if isinstance(v, ApiFault) else v for v in value]
    return value
