"""A failure in any phase rolls the cluster back to its preflight state.

One permanent fault per phase, each where a real cluster can refuse a step, and each injected only once
(a human would fix the cause before the rollback; here it is spent):

- **baseline**: an admission webhook refuses goldpinger's DaemonSet (403), so ``deploy_goldpinger``
  fails with goldpinger half-created; the rollback brings goldpinger back to check the mesh.
- **fence_old_cni**: the API server refuses the fence on ``aws-node`` (422).
- **cilium_nodes**: Helm's install fails half way (the ``cilium-operator`` Deployment is refused, 422):
  the agents already run on the new nodes and the release is recorded ``failed``.
- **cutover**: once the first batch of workloads is Ready on the Cilium nodes, the next eviction is
  refused (403): some workloads moved, some did not.
- **decommission**: after ``aws-node`` was deleted, EKS refuses the old groups' scale-down
  (``InvalidParameterException``): the rollback must bring ``aws-node`` back, fenced, then unfenced.

Each time: the failing task fails at once (a permanent error burns no retries), every rollback step
succeeds, the run ends ``failed``, and the cluster equals its state before the run as
``helpers.cluster_state`` normalizes it (workloads compared by node group once they moved), with no
object of the Cilium release, no Cilium CNI configuration on any node, the mesh healthy and no
PodDisruptionBudget violated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from localrun.rest import AirflowRest
from tests.e2e.conftest import Connected
from tests.e2e.helpers import (
    CUTOVER_GATE,
    DECOMMISSION_GATE,
    OLD_GROUP,
    apps,
    assert_restored,
    assert_rolled_back,
    cluster_state,
    conf_for,
    drive,
    explain,
    is_goldpinger,
    nodes_of,
)
from twin.cluster import Twin
from twin.resources import DAEMONSETS, PODS, ResourceType
from twin.store import Obj

pytestmark = pytest.mark.e2e

Arm = Callable[[Twin], None]


def refuse_now(path: str, method: str, status: int) -> Arm:
    """The next matching Kubernetes request is refused with ``status``."""
    return lambda twin: twin.faults.update({"api": [{"path": path, "method": method, "status": status,
                                                     "count": 1}]})


def _ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def refuse_evictions_after_first_batch(twin: Twin) -> None:
    """Once a moved workload pod is Ready on a node outside the old group, refuse the next eviction."""
    old = {n.metadata.name for n in nodes_of(twin, OLD_GROUP)}
    armed: list[bool] = []

    def watch(event: str, rt: ResourceType, obj: Obj, old_obj: Obj | None) -> None:
        meta = obj["metadata"]
        owners = meta.get("ownerReferences") or []
        node = obj.get("spec", {}).get("nodeName")
        moved = (rt is PODS and not armed and node and node not in old and _ready(obj) and not is_goldpinger(obj)
                 and owners and owners[0].get("kind") in ("ReplicaSet", "StatefulSet")
                 and (meta.get("labels") or {}).get("app.kubernetes.io/part-of") != "cilium")
        if moved:
            armed.append(True)
            twin.faults.update({"api": [{"path": r"/pods/[^/]+/eviction$", "method": "POST", "status": 403,
                                         "count": 1}]})

    twin.store.add_listener(watch)


def refuse_scale_down_after_aws_node_deleted(twin: Twin) -> None:
    """Once ``aws-node`` is deleted, EKS refuses the next node group update."""

    def watch(event: str, rt: ResourceType, obj: Obj, old_obj: Obj | None) -> None:
        if rt is DAEMONSETS and event == "DELETED" and obj["metadata"]["name"] == "aws-node":
            twin.faults.update({"eks": [{"action": "UpdateNodegroupConfig", "code": "InvalidParameterException",
                                         "count": 1, "message": "injected: refused"}]})

    twin.store.add_listener(watch)


@dataclass(frozen=True)
class PhaseFailure:
    failing_task: str
    arm: Arm
    answers: dict[str, str] = field(default_factory=dict)
    workloads_moved: bool = False
    conf: dict[str, Any] = field(default_factory=dict)


PROCEED_ONCE = {CUTOVER_GATE: "proceed"}
PROCEED_TWICE = {CUTOVER_GATE: "proceed", DECOMMISSION_GATE: "proceed"}

FAILURES = {
    "baseline": PhaseFailure("baseline.deploy_goldpinger",
                             refuse_now(r"^/apis/apps/v1/namespaces/[^/]+/daemonsets$", "POST", 403)),
    "fence_old_cni": PhaseFailure("fence_old_cni.fence_aws_node",
                                  refuse_now(r"/namespaces/kube-system/daemonsets/aws-node$", "PATCH", 422)),
    "cilium_nodes": PhaseFailure("cilium_nodes.install_cilium",
                                 refuse_now(r"^/apis/apps/v1/namespaces/kube-system/deployments$", "POST", 422)),
    "cutover": PhaseFailure("cutover.move_workloads", refuse_evictions_after_first_batch, PROCEED_ONCE,
                            workloads_moved=True, conf={"eviction_batch_size": 2}),
    "decommission": PhaseFailure("decommission.scale_old_nodegroups", refuse_scale_down_after_aws_node_deleted,
                                 PROCEED_TWICE, workloads_moved=True),
}


@pytest.mark.parametrize("phase", list(FAILURES))
def test_a_failure_in_each_phase_restores_the_preflight_state(phase: str, cluster: Connected,
                                                              airflow: AirflowRest) -> None:
    failure = FAILURES[phase]
    twin = cluster.twin
    before = cluster_state(twin)
    affinity_before = apps(twin).read_namespaced_daemon_set("aws-node", "kube-system").spec.template.spec.affinity
    failure.arm(twin)

    run = drive(airflow, conf_for(cluster, **failure.conf), answers=failure.answers)

    why = explain(airflow, run)
    assert run.tasks[failure.failing_task] == "failed", why
    assert run.tasks["rollback.on_gate_failure"] == "success", why
    assert_rolled_back(run.tasks, why)
    assert run.state == "failed", why
    assert_restored(twin, before, affinity_before, workloads_moved=failure.workloads_moved)
