"""API requests per check: how many HTTP requests each check in ``checks.CHECKS`` makes, by cluster size.

The goal is a number independent of the node count: each check lists once (label and field selectors)
and filters in memory. Lists are read in pages of ``clients.PAGE_SIZE``, so the continuation pages of a
list (requests carrying ``continue``) grow with what is listed: they are counted apart. ``calls`` is
every Kubernetes request but those pages, plus every EKS request.

Counted in the client: a wrapper around the Kubernetes ``ApiClient.request`` (every request the official
client sends, with its query) and a botocore ``before-send`` hook on the EKS client. The twin is the
generated ``large`` scenario (``twin.scenarios.generate``) with goldpinger deployed, built with its
controllers' passes run in turn (no delays).

    .venv/bin/python -m bench.requests_per_check [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cilium_migration import checks, goldpinger, nodes, restarts, workloads
from cilium_migration.clients import Clients
from cilium_migration.readiness import name_of
from twin.cluster import Twin
from twin.config import Timing
from twin.scenarios.generate import generate_scenario

GOLDPINGER_NS = "default"
NEW_GROUP = "ng-cilium"
NO_DELAYS = Timing(node_provision_s=0, node_drain_s=0, pod_start_s=0, agent_ready_s=0, taint_removal_s=0,
                   goldpinger_refresh_s=30.0, resync_s=1.0)


@dataclass(frozen=True)
class Count:
    calls: int  # Kubernetes requests but continuation pages, plus EKS requests
    pages: int  # continuation pages of lists (grow with the objects listed, not per node)

    def __str__(self) -> str:
        return f"{self.calls}" + (f" (+{self.pages} pages)" if self.pages else "")


@contextmanager
def built_twin(nodes: int, *, workload_pods_per_node: int = 1, timeout: float = 600.0) -> Iterator[Twin]:
    """A started twin of ``nodes`` nodes (old groups ``ng-1``..., ``ng-cilium`` at 0) with goldpinger
    deployed and the cluster settled; stopped on exit."""
    pods = (2 + workload_pods_per_node) * nodes
    twin = Twin(generate_scenario(nodes, pods), timing=NO_DELAYS)
    twin.start(run_controllers=False)
    try:
        twin.settle_by_passes(timeout)
        goldpinger.deploy(Clients(api_client=twin.kube_client(), eks=twin.boto3_client()), GOLDPINGER_NS)
        twin.settle_by_passes(timeout)
        yield twin
    finally:
        twin.stop()


def old_groups(twin: Twin) -> list[str]:
    return sorted(g.name for g in twin.scenario.nodegroups if g.name != NEW_GROUP)


def check_arguments(twin: Twin) -> dict[str, dict[str, Any]]:
    """Arguments for every check, as the DAG passes them, for this twin."""
    old = old_groups(twin)
    return {
        "nodegroups_at_size": {"cluster": twin.cluster_name, "sizes": {"ng-1": 1, NEW_GROUP: 0}},
        "nodes_registered": {"nodegroups": old, "count": 1},
        "nodes_ready": {"nodegroups": old, "count": 1, "cilium": False},
        "all_nodes_ready": {},
        "aws_node_rolled_out": {},
        "aws_node_absent": {"nodegroups": [NEW_GROUP]},
        "cilium_rolled_out": {"namespace": "kube-system", "nodegroups": [NEW_GROUP]},
        "cilium_cni_uninstall_armed": {"namespace": "kube-system", "nodegroups": [NEW_GROUP]},
        "goldpinger_on_nodes": {"namespace": GOLDPINGER_NS, "nodegroups": old},
        "goldpinger_on_cilium": {"namespace": GOLDPINGER_NS},
        "workloads_drained": {"nodegroups": old},
        "mesh_healthy": {"namespace": GOLDPINGER_NS, "aws_nodegroups": old},
        # the in-place DAG's
        "nodes_replaced": {"nodegroups": old, "count": 1, "gone": []},
        "pods_on_cni": {"cni": "cilium"},
        "workload_rolled_out": {"kind": "Deployment", "namespace": "default", "workload": "web"},
    }


class CountingClients(Clients):
    """``Clients`` for a twin whose every request is counted (``count`` resets and reads them)."""

    def __init__(self, twin: Twin) -> None:
        api_client, eks = twin.kube_client(), twin.boto3_client()
        super().__init__(api_client=api_client, eks=eks)
        self.calls = self.pages = 0
        send: Callable[..., Any] = api_client.request

        def counted(method: str, url: str, query_params: Any = None, *args: Any, **kwargs: Any) -> Any:
            if any(key == "continue" for key, _ in query_params or ()):
                self.pages += 1
            else:
                self.calls += 1
            return send(method, url, query_params, *args, **kwargs)

        api_client.request = counted
        eks.meta.events.register("before-send.eks", self._count_eks)

    def _count_eks(self, **_: Any) -> None:
        self.calls += 1

    def count(self, name: str, arguments: dict[str, Any]) -> Count:
        return self.count_call(lambda: checks.run(name, self, **arguments))

    def count_call(self, call: Callable[[], Any]) -> Count:
        self.calls = self.pages = 0
        call()
        return Count(self.calls, self.pages)


MOVE = "workload move: pods to evict"  # workloads.workloads_on_nodes, what the move lists first
RESTART_PLAN = "in-place restart plan"  # restarts.restart_plan, what each pass of the restarts lists


def count_all(twin: Twin) -> dict[str, Count]:
    """Requests of every check in ``checks.CHECKS`` against this twin (a check without arguments here
    is a KeyError: every check is counted), and of the workload move's listing (``MOVE``)."""
    clients, arguments = CountingClients(twin), check_arguments(twin)
    counts = {name: clients.count(name, arguments[name]) for name in sorted(checks.CHECKS)}
    old = [name_of(n) for n in nodes.nodegroup_nodes(clients.core, old_groups(twin))]
    counts[MOVE] = clients.count_call(lambda: workloads.workloads_on_nodes(clients.core, old))
    counts[RESTART_PLAN] = clients.count_call(lambda: restarts.restart_plan(clients.apps, clients.core, clients.custom))
    return counts


def measure(sizes: list[int], *, log: Callable[[str], None] = print) -> dict[int, dict[str, Count]]:
    counts = {}
    for size in sizes:
        log(f"  building a {size}-node twin ...")
        with built_twin(size) as twin:
            counts[size] = count_all(twin)
    return counts


def report(counts: dict[int, dict[str, Count]]) -> tuple[list[str], bool]:
    """One line per check: its requests at each size, and whether they are constant (continuation pages
    aside)."""
    sizes = sorted(counts)
    lines, ok = [], True
    for name in sorted(counts[sizes[0]]):
        per_size = [counts[s][name] for s in sizes]
        constant = len({c.calls for c in per_size}) == 1
        ok = ok and constant
        figures = " / ".join(str(c) for c in per_size)
        lines.append(f"API requests per check: {name} at {'/'.join(map(str, sizes))} nodes: {figures}  "
                     f"goal: constant (list pages of 500 aside)  {'PASS' if constant else 'MISS'}")
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", default="10,100,1000", help="node counts, comma-separated")
    args = ap.parse_args(argv)
    lines, ok = report(measure([int(s) for s in args.sizes.split(",")], log=lambda s: print(s, file=sys.stderr)))
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
