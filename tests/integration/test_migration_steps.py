"""The migration's steps against a running twin, in runbook order, through the provider hooks.

Connections come from the env vars the twin provides (``AIRFLOW_CONN_AWS_DEFAULT``,
``AIRFLOW_CONN_KUBERNETES_DEFAULT``); every call goes over HTTP with the official clients. One twin is
shared by the module, so the tests run as one story: preflight, fence, Cilium nodes, cutover, rollback.
Each step is also run twice (idempotent: the second run changes nothing) and as a dry run (nothing
changes).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from cilium_migration import aws_node, checks, cilium, goldpinger, nodegroups, nodes, preflight, workloads
from cilium_migration.clients import Clients
from cilium_migration.errors import PermanentError
from cilium_migration.readiness import AWS_CNI, CNI_LABEL, name_of, node_cordoned
from cilium_migration.spec import MigrationSpec
from tests.integration.conftest import connected_twin
from twin.cluster import Twin

PARAMS = {"cluster_name": "dc-migrate", "region": "us-west-1", "new_node_count": 2, "eviction_batch_size": 2,
          "timeouts": {"eviction": 20, "poll_interval": 0.1}}


@pytest.fixture(scope="module")
def twin() -> Iterator[Twin]:
    with connected_twin() as t:
        yield t


@pytest.fixture(scope="module")
def spec() -> MigrationSpec:
    return MigrationSpec.from_params(PARAMS)


@pytest.fixture(scope="module")
def clients(twin: Twin, spec: MigrationSpec) -> Clients:
    """Built from the Airflow connections, as a task builds them (KubernetesHook, EksHook)."""
    return Clients(aws_conn_id="aws_default", kubernetes_conn_id="kubernetes_default", region=spec.region)


def wait(check: str, clients: Clients, timeout: float = 20.0, **kwargs: Any) -> checks.Verdict:
    deadline = time.monotonic() + timeout
    while True:
        verdict = checks.run(check, clients, **kwargs)
        assert verdict.status != checks.FAILED, verdict.message
        if verdict.status == checks.DONE:
            return verdict
        assert time.monotonic() < deadline, f"{check} still waiting: {verdict.message}"
        time.sleep(0.1)


def old_nodes(clients: Clients, spec: MigrationSpec) -> list[dict]:
    return nodes.nodegroup_nodes(clients.core, spec.old_nodegroups)


def test_preflight_passes_on_the_runbook_cluster(clients: Clients, spec: MigrationSpec) -> None:
    verified = preflight.check(clients, spec)
    assert "Cilium absent" in verified
    snap = preflight.snapshot(clients, spec)
    assert snap["nodegroups"]["ng-cilium"]["desiredSize"] == 0
    assert snap["nodegroups"]["ng-1"]["desiredSize"] == 3
    assert len(snap["old_nodes"]) == 3 and snap["new_nodes"] == []
    assert not aws_node.is_fenced({"spec": snap["aws_node"]["spec"]})


@pytest.mark.parametrize(("changes", "message"), [
    pytest.param({"old_nodegroups": ["ng-missing"]}, "node group 'ng-missing' not found", id="missing-old-group"),
    pytest.param({"new_nodegroup": "ng-other", "old_nodegroups": ["ng-cilium"]}, "carries the", id="swapped"),
])
def test_preflight_refuses_with_what_to_fix(clients: Clients, changes: dict, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        preflight.check(clients, MigrationSpec.from_params({**PARAMS, **changes}))


def test_goldpinger_deploys_idempotently_and_its_mesh_is_healthy(clients: Clients, spec: MigrationSpec) -> None:
    dry = goldpinger.deploy(clients, spec.goldpinger_namespace, dry_run=True)
    assert len(dry) == 6 and goldpinger.pods(clients.core, spec.goldpinger_namespace) == []
    created = goldpinger.deploy(clients, spec.goldpinger_namespace)
    assert [c.kind for c in created] == ["ServiceAccount", "Role", "RoleBinding", "Service", "DaemonSet",
                                         "Deployment"]
    assert goldpinger.deploy(clients, spec.goldpinger_namespace) == []
    verdict = wait("mesh_healthy", clients, namespace=spec.goldpinger_namespace,
                   aws_nodegroups=list(spec.old_nodegroups))
    assert len(verdict.data["expected"]) == 3 + 5
    assert set(verdict.data["pairs"]) == {"aws-cni<->aws-cni"}


def test_dry_run_fence_changes_nothing(twin: Twin, clients: Clients, spec: MigrationSpec) -> None:
    changes = nodes.label(clients.core, old_nodes(clients, spec), CNI_LABEL, AWS_CNI, dry_run=True)
    changes += aws_node.fence(clients.apps, dry_run=True)
    assert len(changes) == 4 and all(c.dry_run for c in changes)
    assert all(CNI_LABEL not in n["metadata"].get("labels", {}) for n in old_nodes(clients, spec))
    assert not aws_node.is_fenced(aws_node.read(clients.apps) or {})
    dry = [r for r in twin.api.request_log if r.verb == "patch"]
    assert dry, "the dry run reached the API server"


def test_fence_the_old_cni_idempotently(clients: Clients, spec: MigrationSpec) -> None:
    first = nodes.label(clients.core, old_nodes(clients, spec), CNI_LABEL, AWS_CNI)
    first += aws_node.fence(clients.apps)
    assert [c.action for c in first] == ["label"] * 3 + ["patch"]
    assert nodes.label(clients.core, old_nodes(clients, spec), CNI_LABEL, AWS_CNI) == []
    assert aws_node.fence(clients.apps) == []
    assert aws_node.is_fenced(aws_node.read(clients.apps) or {})
    wait("aws_node_rolled_out", clients)


def test_the_old_groups_own_labels_carry_the_fence(clients: Clients, spec: MigrationSpec) -> None:
    """Replacement nodes come up with the group's labels, so they are fenced as aws-cni from the start."""
    changes = nodegroups.label(clients.eks, spec.cluster_name, "ng-1", CNI_LABEL, AWS_CNI)
    assert [(c.action, c.after) for c in changes] == [("label", {CNI_LABEL: AWS_CNI})]
    assert nodegroups.label(clients.eks, spec.cluster_name, "ng-1", CNI_LABEL, AWS_CNI) == []
    assert nodegroups.describe(clients.eks, spec.cluster_name, "ng-1")["labels"][CNI_LABEL] == AWS_CNI


def test_scale_the_new_group_and_its_nodes_register_without_aws_node(clients: Clients, spec: MigrationSpec,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    import logging

    log = logging.getLogger("test")
    with caplog.at_level(logging.INFO):
        dry = nodegroups.scale(clients.eks, spec.cluster_name, spec.new_nodegroup, 2, dry_run=True, log=log)
    assert dry[0].dry_run and "would scale ng-cilium to 2" in caplog.text
    assert nodegroups.describe(clients.eks, spec.cluster_name, "ng-cilium")["scalingConfig"]["desiredSize"] == 0
    changes = nodegroups.scale(clients.eks, spec.cluster_name, spec.new_nodegroup, 2)
    assert changes[0].after == {"minSize": 0, "maxSize": 3, "desiredSize": 2}
    assert nodegroups.scale(clients.eks, spec.cluster_name, spec.new_nodegroup, 2) == []
    wait("nodegroups_at_size", clients, cluster=spec.cluster_name, sizes={"ng-cilium": 2})
    wait("nodes_registered", clients, nodegroups=["ng-cilium"], count=2)
    verdict = checks.run("nodes_ready", clients, nodegroups=["ng-cilium"], count=2)
    assert verdict.status == checks.WAITING, "no CNI yet: the new nodes must not be Ready"
    assert wait("aws_node_absent", clients, nodegroups=["ng-cilium"]).data["nodes"]


def test_install_cilium_makes_the_new_nodes_ready(clients: Clients, spec: MigrationSpec) -> None:
    values = cilium.runbook_values(cluster_name=spec.cluster_name, region=spec.region)
    changes = cilium.deploy(clients.api_client, spec.chart_ref, values, release=spec.release,
                            namespace=spec.cilium_namespace)
    assert any(c.action == "create" for c in changes)
    wait("nodes_ready", clients, timeout=30, nodegroups=["ng-cilium"], count=2)
    assert "resuming" in " ".join(preflight.check(clients, spec)), "an earlier run's Cilium is resumable"
    done = wait("cilium_rolled_out", clients, timeout=30, namespace=spec.cilium_namespace, nodegroups=["ng-cilium"])
    assert "cilium, cilium-envoy" in done.message and "no Cilium pod Pending" in done.message


def test_the_rollout_gate_waits_while_a_cilium_pod_is_pending(clients: Clients, spec: MigrationSpec) -> None:
    """Without the fence on cilium-envoy (the chart's own affinity) the DaemonSet wants envoy on the
    aws-cni nodes too, where no agent may run: those pods stay Pending and the gate keeps waiting."""
    values = cilium.runbook_values(cluster_name=spec.cluster_name, region=spec.region)
    cilium.deploy(clients.api_client, spec.chart_ref, cilium.deep_merge(values, {"envoy": {"affinity": None}}),
                  release=spec.release, namespace=spec.cilium_namespace)
    deadline = time.monotonic() + 20
    while (verdict := checks.run("cilium_rolled_out", clients, namespace=spec.cilium_namespace,
                                 nodegroups=["ng-cilium"])).status == checks.DONE or "Pending" not in verdict.message:
        assert time.monotonic() < deadline, f"the gate never saw the Pending envoy pods: {verdict.message}"
        time.sleep(0.1)
    assert verdict.status == checks.WAITING and "cilium-envoy" in verdict.message
    assert "didn't match pod affinity rules" in verdict.message, "the scheduler's reason is shown"
    cilium.deploy(clients.api_client, spec.chart_ref, values, release=spec.release, namespace=spec.cilium_namespace)
    wait("cilium_rolled_out", clients, timeout=30, namespace=spec.cilium_namespace, nodegroups=["ng-cilium"])


def test_the_mesh_gate_names_a_broken_cross_cni_pair(twin: Twin, clients: Clients, spec: MigrationSpec) -> None:
    wait("goldpinger_on_nodes", clients, namespace=spec.goldpinger_namespace, nodegroups=[spec.new_nodegroup])
    healthy = wait("mesh_healthy", clients, namespace=spec.goldpinger_namespace)
    assert set(healthy.data["pairs"]) == {"aws-cni<->aws-cni", "aws-cni<->cilium", "cilium<->cilium"}
    twin.faults.update({"cross_cni_broken": True})
    try:
        time.sleep(0.3)  # a ping round after the fault
        started = time.time()
        verdict = checks.run("mesh_healthy", clients, namespace=spec.goldpinger_namespace,
                             started_at=datetime.fromtimestamp(started, UTC).isoformat(), tolerance_s=5)
        assert verdict.status == checks.WAITING
        assert verdict.data["pairs"]["aws-cni<->cilium"]["healthy"] is False
        assert "aws-cni<->cilium" in verdict.message.split("failing pairs: ")[1].split(" | ")[0]
        # instances the serving pod cannot reach report nothing: "did not answer" rather than a pass
        assert any("did not answer" in p or "answered not OK" in p or "aws-cni<->cilium" in p
                   for p in verdict.data["problems"])
    finally:
        twin.faults.update({"cross_cni_broken": False})
    wait("mesh_healthy", clients, namespace=spec.goldpinger_namespace)


def test_cutover_moves_workloads_respecting_batches(twin: Twin, clients: Clients, spec: MigrationSpec) -> None:
    cordons = nodes.set_cordoned(clients.core, old_nodes(clients, spec), True)
    assert len(cordons) == 3 and all(node_cordoned(n) for n in old_nodes(clients, spec))
    names = [name_of(n) for n in old_nodes(clients, spec)]
    before = workloads.workloads_on_nodes(clients.core, names)
    assert before, "the scenario has workloads on the old nodes"
    moved = workloads.move(clients.core, names, batch_size=spec.eviction_batch_size, batch_timeout=20,
                           poll=0.1)
    assert sorted(c.name for c in moved) == sorted(name_of(p) for p in before)
    assert all(c.action == "evict" for c in moved)
    wait("workloads_drained", clients, nodegroups=list(spec.old_nodegroups))
    evictions = [r for r in twin.api.request_log if r.subresource == "eviction"]
    assert len(evictions) >= len(before)
    assert workloads.move(clients.core, names, batch_size=2, batch_timeout=5) == []


def test_a_resumed_run_does_not_mistake_our_cordons_for_the_operators(clients: Clients,
                                                                      spec: MigrationSpec) -> None:
    """After a 'hold', the old nodes stay cordoned by us; a later run's snapshot must still let rollback
    uncordon them, while a node the operator had cordoned before the migration stays cordoned."""
    assert all(nodes.cordoned_by_us(n) for n in old_nodes(clients, spec))
    snap = preflight.snapshot(clients, spec)
    assert snap["resumed"] and snap["old_nodes_cordoned"] == []
    assert snap["nodegroups"][spec.new_nodegroup]["desiredSize"] == 0


def test_goldpinger_restart_lands_on_cilium_nodes_once_per_token(clients: Clients, spec: MigrationSpec) -> None:
    first = goldpinger.restart(clients.apps, spec.goldpinger_namespace, "Deployment", "run-1/cutover")
    assert len(first) == 1
    assert goldpinger.restart(clients.apps, spec.goldpinger_namespace, "Deployment", "run-1/cutover") == []
    wait("goldpinger_on_cilium", clients, namespace=spec.goldpinger_namespace)


def test_rollback_restores_the_snapshot(clients: Clients, spec: MigrationSpec) -> None:
    snap_ds = aws_node.read(clients.apps)
    assert snap_ds is not None
    restored = aws_node.restore(clients.apps, {"spec": {"template": {"spec": {
        "affinity": aws_node.unfenced_affinity(aws_node.affinity_of(snap_ds))}}}})
    assert restored and not aws_node.is_fenced(aws_node.read(clients.apps) or {})
    nodes.set_cordoned(clients.core, old_nodes(clients, spec), False)
    assert not any(nodes.cordoned_by_us(n) or node_cordoned(n) for n in old_nodes(clients, spec))
    new = nodes.nodegroup_nodes(clients.core, [spec.new_nodegroup])
    nodes.set_cordoned(clients.core, new, True)
    workloads.move(clients.core, [name_of(n) for n in new], batch_size=5, batch_timeout=20, poll=0.1,
                   target_cni=AWS_CNI)  # moving back: replacements Ready on aws-cni nodes
    wait("workloads_drained", clients, nodegroups=[spec.new_nodegroup])
    removed = cilium.uninstall(clients.api_client, release=spec.release, namespace=spec.cilium_namespace)
    assert removed and cilium.release_state(clients.api_client) is None
    nodegroups.scale(clients.eks, spec.cluster_name, spec.new_nodegroup, 0)
    wait("nodes_registered", clients, timeout=30, nodegroups=[spec.new_nodegroup], count=0)
    assert "Cilium absent" in preflight.check(clients, spec)
