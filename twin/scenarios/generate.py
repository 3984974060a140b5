"""Large clusters for benchmarks: the default scenario's add-ons on N nodes, and workloads up to M pods.

Rules:
- Nodes are spread over node groups ``ng-1``, ``ng-2``, ... of at most ``per_group`` nodes each, plus the
  default scenario's ``ng-cilium`` at 0.
- ``pods`` counts every pod the controllers will make: the two DaemonSets' (``aws-node``, ``kube-proxy``,
  one per node), the default workloads', and Deployments of ``replicas`` pods each in namespaces
  ``apps-0`` ... ``apps-9`` for the rest (the scheduler places them).
"""

from __future__ import annotations

from typing import Any

from twin.scenario import NodeGroupSpec, Scenario, load_scenario

DAEMONSETS_PER_NODE = 2  # aws-node, kube-proxy


def generate_scenario(
    nodes: int, pods: int, *, per_group: int = 250, replicas: int = 100, namespaces: int = 10
) -> Scenario:
    """A scenario of ``nodes`` nodes and (about, at least the add-ons') ``pods`` pods."""
    base = load_scenario("default")
    groups = [
        NodeGroupSpec(name=f"ng-{i + 1}", instanceType="m5.large", desired=size, min=0, max=max(size, 1))
        for i, size in enumerate(_split(nodes, per_group))
    ]
    cilium = [g for g in base.nodegroups if g.name == "ng-cilium"]
    base_pods = sum(int(o["spec"].get("replicas", 1)) for o in base.objects
                    if o["kind"] in ("Deployment", "StatefulSet"))
    workload = max(0, pods - DAEMONSETS_PER_NODE * nodes - base_pods)
    objects: list[dict[str, Any]] = list(base.objects)
    objects += [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"apps-{i}"}}
        for i in range(min(namespaces, max(1, -(-workload // replicas))))
    ]
    for i, count in enumerate(_split(workload, replicas)):
        objects.append(_deployment(f"app-{i}", f"apps-{i % namespaces}", count))
    return Scenario(cluster=base.cluster, nodegroups=groups + cilium, objects=objects)


def _split(total: int, chunk: int) -> list[int]:
    return [min(chunk, total - start) for start in range(0, total, chunk)]


def _deployment(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "public.ecr.aws/docker/library/busybox:1.36",
                            "command": ["sleep", "infinity"],
                        }
                    ]
                },
            },
        },
    }
