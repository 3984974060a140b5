"""The evidence a human reads before approving an irreversible step (Markdown bodies).

No approval defaults to "proceed": on a timeout the cutover gate applies "roll back" and the
decommission gate "hold" (the run ends, the cluster stays in the cutover state, nothing is deleted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PROCEED, ROLL_BACK, HOLD = "proceed", "roll back", "hold"

CUTOVER_CHANGES = (
    "cordon the old nodes (`cni=aws-cni`)",
    "restart the goldpinger Deployment (its pods land on Cilium nodes)",
    "evict workload pods from the old nodes in batches, respecting PodDisruptionBudgets",
)
DECOMMISSION_CHANGES = (
    "delete the `aws-node` DaemonSet (irreversible for running aws-cni pods)",
    "scale the old node groups to 0 and wait for their nodes to go",
    "re-enable Cilium's unmanaged-pod watcher (`operator.unmanagedPodWatcher.restart: true`)",
)
# the in-place strategy's gates
RESTART_CHANGES = (
    "rollout-restart every Deployment, StatefulSet and DaemonSet with a pod on the AWS VPC CNI, namespace by "
    "namespace (`restart_namespaces` first), one at a time, each after its PodDisruptionBudget allows it",
    "their new pods get Cilium (its CNI configuration comes first on every node); bare pods are listed for you",
)
REMOVAL_CHANGES = (
    "delete the `aws-node` DaemonSet (or the `vpc-cni` add-on)",
    "replace every node of the old node groups, one at a time (surge one, cordon, evict respecting "
    "PodDisruptionBudgets, terminate its instance): no iptables rule of the old CNI survives",
    "re-enable Cilium's unmanaged-pod watcher (`operator.unmanagedPodWatcher.restart: true`)",
)


def evidence(*, title: str, mesh: Mapping[str, Any] | None, node_lines: Iterable[str],
             changes: Iterable[str], options: Iterable[str], extra: Iterable[str] = ()) -> str:
    """Markdown: the mesh verdict per CNI pair, node states, and what the next phase changes."""
    lines = [f"## {title}", "", "### Connectivity (goldpinger)"]
    if mesh:
        lines.append(f"**{'HEALTHY' if mesh.get('healthy') else 'UNHEALTHY'}** - {mesh.get('summary', '')}")
        for pair, v in sorted((mesh.get("pairs") or {}).items()):
            lines.append(f"- {pair}: {'OK' if v.get('healthy') else 'FAILING'} ({v.get('ok', 0)} ok, "
                         f"{v.get('failed_count', len(v.get('failed') or []))} failed)")
        for problem in (mesh.get("problems") or [])[:10]:
            lines.append(f"  - {problem}")
    else:
        lines.append("no mesh verdict recorded (dry run or goldpinger not deployed)")
    lines += ["", "### Nodes", *[f"- {line}" for line in node_lines]]
    lines += ["", "### What this step changes", *[f"- {c}" for c in changes]]
    lines += [*(["", *extra] if extra else [])]
    lines += ["", "### Options", *[f"- **{o}**" for o in options]]
    return "\n".join(lines)
