"""How fast the twin's controllers act: delays a real cluster has, shortened for tests."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Timing:
    """Delays, in seconds. ``scaled(f)`` multiplies them all (tests use small factors)."""

    node_provision_s: float = 3.0  # node group grows -> Node object registers (NotReady)
    node_drain_s: float = 1.0  # node group shrinks -> node drained and deleted
    pod_start_s: float = 1.0  # pod bound to a node -> Running and Ready
    agent_ready_s: float = 1.0  # CNI agent pod Running -> node Ready
    taint_removal_s: float = 0.5  # cilium agent ready -> operator removes agent-not-ready taint
    goldpinger_refresh_s: float = 1.0  # how often goldpinger instances ping each other
    resync_s: float = 0.5  # how often every controller reconciles even without events

    def scaled(self, factor: float) -> Timing:
        return replace(self, **{f.name: getattr(self, f.name) * factor for f in fields(self)})


FAST = Timing().scaled(0.1)
