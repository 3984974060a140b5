"""The DAG params that fit a scenario, so a captured cluster can be rehearsed as it is.

Rules: the new node group is the one tainted ``node.cilium.io/agent-not-ready`` (the runbook's
precondition: create it at size 0 first); the old node groups are every other group with nodes; the new
group starts as many nodes as the old groups have, within its maximum.
"""

from __future__ import annotations

from typing import Any

from twin.scenario import Scenario

AGENT_NOT_READY = "node.cilium.io/agent-not-ready"


class RehearsalError(ValueError):
    """The scenario cannot be migrated as it is; the message says what to add."""


def params_for(scenario: Scenario) -> dict[str, Any]:
    """``cluster_name``, ``region``, ``old_nodegroups``, ``new_nodegroup`` and ``new_node_count``."""
    tainted = [g for g in scenario.nodegroups if any(t.key == AGENT_NOT_READY for t in g.taints)]
    if len(tainted) != 1:
        found = ", ".join(g.name for g in tainted) or "none"
        raise RehearsalError(
            f"need exactly one node group tainted {AGENT_NOT_READY}=true:NoExecute for Cilium (found: {found});"
            " create it at size 0 in the cluster (or add it to the scenario) and capture again")
    new = tainted[0]
    old = [g for g in scenario.nodegroups if g is not new and g.desired > 0]
    if not old:
        raise RehearsalError("no node group with nodes to migrate away from")
    wanted = sum(g.desired for g in old)
    return {"cluster_name": scenario.cluster.name, "region": scenario.cluster.region,
            "old_nodegroups": [g.name for g in old], "new_nodegroup": new.name,
            "new_node_count": max(1, min(wanted, new.max))}
