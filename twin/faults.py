"""Faults the twin can inject, switchable in a scenario, over the admin endpoint, or from Python.

Controllers and the API server read this object on every pass, so a change takes effect at once.

Request faults (``api`` for the Kubernetes API, ``eks`` for the EKS API) are bursts or outages:
- a burst answers the next ``count`` matching requests with the fault, then the fault is spent;
- an outage (``seconds`` given; ``count`` is then ignored) answers every matching request for that many
  seconds from the moment the fault is set, then expires by itself. ``GET /_twin/faults`` shows the
  seconds left.
- ``retry_after`` (seconds) is sent as the ``Retry-After`` header (Kubernetes 429 and 503 answers).
The first fault that matches a request and is still active answers it.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any

EKS_STATUS = {  # the HTTP status EKS answers each error code with
    "ResourceInUseException": 409, "ThrottlingException": 400, "TooManyRequestsException": 429,
    "ServerException": 500, "ServiceUnavailableException": 503, "ResourceNotFoundException": 404,
    "InvalidParameterException": 400, "InvalidRequestException": 400, "AccessDeniedException": 403,
    # EC2's (the in-place node roll's TerminateInstances)
    "RequestLimitExceeded": 503, "InternalError": 500, "Unavailable": 503, "UnauthorizedOperation": 403,
}


class _Window:
    """A burst (``count`` answers) or an outage (``seconds`` from when it was set)."""

    count: int
    seconds: float | None
    until: float | None

    def _start(self) -> None:
        self.until = time.monotonic() + self.seconds if self.seconds is not None else None

    def active(self) -> bool:
        if self.until is not None:
            return time.monotonic() < self.until
        return self.count > 0

    def take(self) -> None:
        """One matching request answered: a burst shrinks, an outage does not."""
        if self.until is None:
            self.count -= 1

    def seconds_left(self) -> float | None:
        return None if self.until is None else round(max(0.0, self.until - time.monotonic()), 1)

    def to_dict(self) -> dict[str, Any]:
        """The fault as set (``seconds``: what is left of an outage); round-trips through ``update``."""
        plain = {f.name: getattr(self, f.name) for f in fields(self) if f.init}  # type: ignore[arg-type]
        plain["seconds"] = self.seconds_left()
        return plain


@dataclass
class ApiFault(_Window):
    """Answer matching Kubernetes API requests with ``status`` (500, 503, 429, ...): a burst of ``count``,
    or an outage of ``seconds``."""

    path: str  # a regular expression searched in the request path
    status: int = 503
    count: int = 3
    method: str | None = None  # None: any method
    seconds: float | None = None  # an outage: every matching request for this long
    retry_after: int | None = None  # the Retry-After header, in seconds
    until: float | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._start()

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method.upper()) and bool(
            re.search(self.path, path))


@dataclass
class EksFault(_Window):
    """Answer matching EKS requests with an AWS error: ``code`` (``ResourceInUseException``...) and its
    HTTP ``status`` (from ``EKS_STATUS`` when not given): a burst of ``count``, or an outage of ``seconds``."""

    action: str  # a regular expression matched against the whole operation name: "UpdateNodegroupConfig"
    code: str = "ThrottlingException"
    status: int | None = None
    count: int = 3
    seconds: float | None = None
    message: str = "injected fault"
    until: float | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.status is None:
            self.status = EKS_STATUS.get(self.code, 500)
        self._start()

    def matches(self, action: str) -> bool:
        return re.fullmatch(self.action, action) is not None


@dataclass
class Faults:
    """The switchable faults. All fields are safe to change while the twin runs."""

    agent_never_ready: list[str] = field(default_factory=list)  # node names or node-group names
    cross_cni_broken: bool = False  # pods wired by different CNIs cannot reach each other
    api: list[ApiFault] = field(default_factory=list)
    eks: list[EksFault] = field(default_factory=list)
    ec2: list[EksFault] = field(default_factory=list)  # the same shape, matched against EC2 actions
    blocked_pdbs: list[str] = field(default_factory=list)  # "namespace/name": evictions always 429
    slow_provisioning_s: float = 0.0  # extra delay before new nodes register
    stuck_nodegroups: list[str] = field(default_factory=list)  # scaling never completes
    controllers_down: list[str] = field(default_factory=list)  # controller names ("deployments"...) that skip
    # their passes: a kube-controller-manager that is down or lagging; they catch up once lifted
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def api_fault_for(self, method: str, path: str) -> ApiFault | None:
        """The fault that answers this request instead of the server, taking one from its burst."""
        with self.lock:
            for fault in self.api:
                if fault.active() and fault.matches(method, path):
                    fault.take()
                    return fault
        return None

    def api_error_for(self, method: str, path: str) -> int | None:
        """The status to answer instead of serving this request, taking one from its burst."""
        fault = self.api_fault_for(method, path)
        return fault.status if fault is not None else None

    def eks_fault_for(self, action: str, service: str = "eks") -> EksFault | None:
        """The fault that answers this EKS (or EC2) operation instead of moto, taking one from its burst."""
        with self.lock:
            for fault in self.eks if service == "eks" else self.ec2:
                if fault.active() and fault.matches(action):
                    fault.take()
                    return fault
        return None

    def agent_blocked(self, node_name: str, nodegroup: str | None) -> bool:
        return node_name in self.agent_never_ready or (nodegroup or "") in self.agent_never_ready

    def to_dict(self) -> dict[str, Any]:
        with self.lock:  # not asdict(self): it would try to deep-copy the lock
            return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "lock"}

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial dict (as the admin endpoint receives it); unknown keys raise ValueError.
        Outages start now."""
        with self.lock:
            for key, value in changes.items():
                if key == "lock" or not hasattr(self, key):
                    raise ValueError(f"unknown fault: {key}")
                if key == "api":
                    value = [ApiFault(**v) if isinstance(v, dict) else v for v in value]
                if key in ("eks", "ec2"):
                    value = [EksFault(**v) if isinstance(v, dict) else v for v in value]
                setattr(self, key, value)


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [v.to_dict() if isinstance(v, _Window) else v for v in value]
    return value
