"""How fast the twin's controllers act: delays a real cluster has, shortened for tests.

Profiles (``PROFILES``, ``python -m twin --timing NAME``): ``default`` (``Timing()``), ``fast`` (what the
end-to-end tests use, ``Timing().scaled(0.15)``) and ``realistic`` (``Timing.realistic()``: delays as on
EKS, for the run-time benchmark).
"""

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

    @classmethod
    def realistic(cls) -> Timing:
        """Delays as a real EKS cluster has them (approximate, typical figures, not measurements):

        - ``node_provision_s`` 75: an EKS managed node group's scale-up (``UpdateNodegroupConfig``, the Auto
          Scaling group launching the instance, EC2 boot, kubelet registration) takes about 1 to 2 minutes
          to a Ready node; the twin registers the node after 75 s, and the CNI then makes it Ready.
        - ``node_drain_s`` 60: scale-down (the managed node group drains the node, EC2 terminates the
          instance, the Node object goes) takes a minute or more.
        - ``pod_start_s`` 6: a pod with its images already on the node starts and turns Ready in about
          5 to 10 s (sandbox, network set-up, readiness probe).
        - ``agent_ready_s`` 5: the kubelet reports the network ready at its next status update (every
          10 s by default) once the CNI agent has written its configuration.
        - ``taint_removal_s`` 1: the cilium-operator watches nodes and lifts the taint at once.
        - ``goldpinger_refresh_s`` 5: the ``REFRESH_INTERVAL`` the migration's goldpinger manifest sets.
        - ``resync_s`` 0.5: the twin's controllers' own resync, not a delay of the cluster.
        """
        return cls(node_provision_s=75.0, node_drain_s=60.0, pod_start_s=6.0, agent_ready_s=5.0,
                   taint_removal_s=1.0, goldpinger_refresh_s=5.0, resync_s=0.5)


FAST = Timing().scaled(0.1)

PROFILES: dict[str, Timing] = {
    "default": Timing(),
    "fast": Timing().scaled(0.15),
    "realistic": Timing.realistic(),
}
