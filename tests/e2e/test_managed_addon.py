"""A migration of a cluster whose ``vpc-cni`` is an EKS managed add-on, with a StatefulSet behind a PDB.

One real run, approved at both gates, against the ``managed-vpc-cni`` scenario (the runbook's cluster
with ``vpc-cni`` managed by EKS, and the ``db`` StatefulSet with its PodDisruptionBudget that every
scenario has). The fence goes through the add-on's configuration (a direct patch of ``aws-node`` would be
reverted by the add-on manager), the decommission deletes the add-on. Afterwards:

- the run ends ``success`` with every rollback step skipped;
- the ``vpc-cni`` add-on and ``aws-node`` are gone; the old node group is at 0;
- the StatefulSet's pods run Ready on Cilium nodes, with the same names and new UIDs;
- no PodDisruptionBudget was violated at any moment.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from localrun.rest import AirflowRest
from tests.e2e.conftest import connected_twin
from tests.e2e.helpers import (
    CUTOVER_GATE,
    DECOMMISSION_GATE,
    NEW_GROUP,
    OLD_GROUP,
    apps,
    conf_for,
    core,
    drive,
    explain,
    node_groups,
    nodes_of,
    pod_ready,
)

pytestmark = pytest.mark.e2e


def test_a_managed_addon_cluster_with_a_statefulset_migrates(airflow: AirflowRest, tmp_path: Path) -> None:
    with connected_twin(airflow, tmp_path, scenario="managed-vpc-cni") as cluster:
        twin = cluster.twin
        eks = twin.boto3_client("eks")
        assert eks.describe_addon(clusterName=twin.cluster_name, addonName="vpc-cni")["addon"]["status"] == "ACTIVE"
        db_before = {p.metadata.name: p.metadata.uid for p in core(twin).list_namespaced_pod(
            "default", label_selector="app=db").items}
        assert len(db_before) == 2

        run = drive(airflow, conf_for(cluster), answers={CUTOVER_GATE: "proceed", DECOMMISSION_GATE: "proceed"})

        why = explain(airflow, run)
        assert run.state == "success", why
        assert {s for t, s in run.tasks.items() if t.startswith("rollback.")} == {"skipped"}, why
        addons = eks.list_addons(clusterName=twin.cluster_name)["addons"]
        assert "vpc-cni" not in addons, "the decommission deleted the managed add-on"
        assert [d.metadata.name for d in apps(twin).list_namespaced_daemon_set("kube-system").items
                if d.metadata.name == "aws-node"] == []
        assert node_groups(twin)[OLD_GROUP]["scalingConfig"]["desiredSize"] == 0
        on_cilium = {n.metadata.name for n in nodes_of(twin, NEW_GROUP)}
        db_after = core(twin).list_namespaced_pod("default", label_selector="app=db").items
        assert sorted(p.metadata.name for p in db_after) == sorted(db_before)
        assert all(p.spec.node_name in on_cilium and pod_ready(p) for p in db_after), why
        assert all(p.metadata.uid != db_before[p.metadata.name] for p in db_after), "moved: new UIDs"
        assert twin.disruption is not None and twin.disruption.violations == []
