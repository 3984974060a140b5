"""A plain-text picture of the cluster: node groups, nodes, and where the pods run with which CNI."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

CNI_ANNOTATION = "twin.cilium-migration.io/cni"


def node_ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))


def describe(core_v1: Any, eks: Any, cluster_name: str) -> str:
    """Render node groups (from EKS), nodes and pods (from Kubernetes) as aligned text tables."""
    lines = [f"EKS cluster {cluster_name}"]
    for name in eks.list_nodegroups(clusterName=cluster_name)["nodegroups"]:
        ng = eks.describe_nodegroup(clusterName=cluster_name, nodegroupName=name)["nodegroup"]
        sc = ng.get("scalingConfig", {})
        taints = ",".join(f"{t['key']}={t.get('value', '')}:{t['effect']}" for t in ng.get("taints") or [])
        lines.append(f"  nodegroup {name:<12} {ng['status']:<8} desired={sc.get('desiredSize')} "
                     f"min={sc.get('minSize')} max={sc.get('maxSize')} {taints}")
    pods = core_v1.list_pod_for_all_namespaces().items
    by_node: dict[str, list[Any]] = defaultdict(list)
    for p in pods:
        by_node[p.spec.node_name or "<pending>"].append(p)
    lines.append("")
    lines.append(f"  {'NODE':<46} {'GROUP':<10} {'CNI-LABEL':<9} {'STATUS':<26} {'PODS':>4}  WIRED-BY")
    for node in sorted(core_v1.list_node().items, key=lambda n: n.metadata.name):
        labels = node.metadata.labels or {}
        status = "Ready" if node_ready(node) else "NotReady"
        if node.spec.unschedulable:
            status += ",SchedulingDisabled"
        if any(t.key == "node.cilium.io/agent-not-ready" for t in node.spec.taints or []):
            status += ",agent-not-ready"
        node_pods = by_node.get(node.metadata.name, [])
        wired = Counter((p.metadata.annotations or {}).get(CNI_ANNOTATION, "host") for p in node_pods)
        lines.append(f"  {node.metadata.name:<46} {labels.get('eks.amazonaws.com/nodegroup', '-'):<10} "
                     f"{labels.get('cni', '-'):<9} {status:<26} {len(node_pods):>4}  "
                     + " ".join(f"{k}={v}" for k, v in sorted(wired.items())))
    if by_node.get("<pending>"):
        lines.append(f"  pending pods: {', '.join(p.metadata.name for p in by_node['<pending>'])}")
    return "\n".join(lines)
