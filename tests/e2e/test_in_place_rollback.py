"""The in-place strategy rolled back (``eks_cilium_migration_in_place``): rejected at each gate.

"Roll back" at ``approve_restarts.approve`` and at ``approve_removal.approve`` (after every pod moved to
Cilium) both end ``success`` with every rollback step done, Cilium gone (nothing of its release, no Cilium
configuration on any node), every pod back on the AWS VPC CNI, and the cluster as it was before the run,
as ``helpers.cluster_state`` normalizes it, less what a restart changes by design:
``kubectl.kubernetes.io/restartedAt`` in pod templates, the ReplicaSets and pod-template hashes a restart
makes, which node of its group a restarted pod landed on (the scheduler's choice), and the CiliumNode
objects Cilium's agents leave (owned by their nodes; README, "Rolling back"). One twin at a time: each
test's twin stops before the next starts (moto keeps EKS state per process, by cluster name).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from localrun.rest import AirflowRest
from tests.e2e.conftest import connected_twin
from tests.e2e.helpers import (
    CNI_ANNOTATION,
    IN_PLACE_DAG_ID,
    cilium_cni_configs,
    cilium_leftovers,
    cluster_state,
    describe_pod,
    drive,
    explain,
    with_workloads_by_group,
    workload_pods,
)
from tests.e2e.test_in_place import REMOVAL_GATE, RESTARTS_GATE, ROLLBACK, in_place_conf

pytestmark = pytest.mark.e2e

RESTART_MARK = "kubectl.kubernetes.io/restartedAt"


def settled(state: dict[str, Any]) -> dict[str, Any]:
    """``cluster_state`` less what a restart changes by design: ``restartedAt`` in templates, ReplicaSets
    and pod-template hashes; and the CiliumNode objects left by Cilium's agents."""
    specs = {}
    for key, by_name in state["specs"].items():
        specs[key] = {}
        for name, spec in by_name.items():
            template = dict(spec.get("template") or {})
            meta = dict(template.get("metadata") or {})
            meta["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items() if k != RESTART_MARK}
            specs[key][name] = {**spec, "template": {**template, "metadata": meta}}
    objects = [o for o in state["objects"] if not o.startswith(("replicasets.apps ", "ciliumnodes.cilium.io "))]
    pods = sorted(re.sub(r" \(hash [^)]*\)", "", line) for line in state["pods"])
    return {**state, "specs": specs, "objects": objects, "pods": pods}


@pytest.mark.parametrize("gate", [RESTARTS_GATE, REMOVAL_GATE])
def test_a_rejection_at_each_gate_rolls_back_to_the_snapshot(airflow: AirflowRest, tmp_path: Any, gate: str) -> None:
    with connected_twin(airflow, tmp_path) as cluster:
        twin = cluster.twin
        before = with_workloads_by_group(settled(cluster_state(twin)))
        answers = {RESTARTS_GATE: "roll back"} if gate == RESTARTS_GATE else {RESTARTS_GATE: "proceed",
                                                                             REMOVAL_GATE: "roll back"}
        run = drive(airflow, in_place_conf(cluster), answers=answers, dag_id=IN_PLACE_DAG_ID, timeout=360)
        why = explain(airflow, run)
        assert run.state == "success", why
        assert {t: run.tasks.get(t) for t in ROLLBACK} == dict.fromkeys(ROLLBACK, "success"), why
        assert cilium_leftovers(twin) == [] and cilium_cni_configs(twin) == {}, why
        on_cilium = [describe_pod(p) for p in workload_pods(twin)
                     if (p.metadata.annotations or {}).get(CNI_ANNOTATION) != "aws-cni"]
        assert on_cilium == [], why
        assert with_workloads_by_group(settled(cluster_state(twin))) == before
        assert twin.disruption is not None and twin.disruption.violations == []
