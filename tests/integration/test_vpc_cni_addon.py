"""The aws-node steps on a cluster whose vpc-cni is an EKS managed add-on, against a running twin.

One twin (scenario ``managed-vpc-cni``) is shared by the module, so the tests run as one story, each step as
its operator runs it (``step()``, with clients built from the Airflow connections, over HTTP):
preflight snapshot (records the add-on), fence (dry run, then twice: the second changes nothing; a direct
edit of aws-node is reverted by the next fence), rollback (the recorded configuration put back), fence and
decommission (the add-on deleted, aws-node with it), rollback after the decommission (the add-on re-created
with its version and configuration). Last, the IAM actions the DAG's access key called are checked against
``deploy/iam-policy.json``: the add-on actions used only on add-on clusters are exactly ``ADDON_ONLY_ACTIONS``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cilium_migration import addons, aws_node, checks, preflight
from cilium_migration.audit import Change
from cilium_migration.clients import Clients
from cilium_migration.operators import AwsNodeDeleteOperator, AwsNodeFenceOperator, AwsNodeRestoreOperator
from cilium_migration.readiness import AWS_CNI, CNI_LABEL
from cilium_migration.spec import MigrationSpec
from tests.integration.conftest import connected_twin
from twin.cluster import Twin

ROOT = Path(__file__).resolve().parents[2]
PARAMS = {"cluster_name": "dc-migrate", "region": "us-west-1", "new_node_count": 2,
          "timeouts": {"rollout": 20, "poll_interval": 0.1}}
DAG_ACCESS_KEY = "AKIAVPCCNIADDONSTEPS"  # the twin's own requests use another key
SCENARIO_CONFIG = {"env": {"WARM_ENI_TARGET": "1"}}


@pytest.fixture(scope="module")
def twin() -> Iterator[Twin]:
    with connected_twin("managed-vpc-cni", aws_login=DAG_ACCESS_KEY) as t:
        yield t


@pytest.fixture(scope="module")
def spec() -> MigrationSpec:
    return MigrationSpec.from_params(PARAMS)


@pytest.fixture(scope="module")
def clients(twin: Twin, spec: MigrationSpec) -> Clients:
    """Built from the Airflow connections, as a task builds them (KubernetesHook, EksHook)."""
    return Clients(aws_conn_id="aws_default", kubernetes_conn_id="kubernetes_default", region=spec.region)


@pytest.fixture(scope="module")
def snapshot(clients: Clients, spec: MigrationSpec) -> dict[str, Any]:
    return preflight.snapshot(clients, spec)


class Ti:
    """The task instance a rollback step pulls the preflight snapshot from."""

    def __init__(self, snap: dict[str, Any]) -> None:
        self.snap = snap

    def xcom_pull(self, task_ids: str) -> dict[str, Any]:
        return self.snap


def step(operator: type, spec: MigrationSpec, snap: dict[str, Any] | None = None) -> list[Change]:
    op = operator(task_id=operator.__name__, aws_conn_id="aws_default", kubernetes_conn_id="kubernetes_default")
    changes: list[Change] = op.step({"ti": Ti(snap or {})}, spec)
    return changes


def addon(clients: Clients, spec: MigrationSpec) -> dict[str, Any] | None:
    return addons.describe(clients.eks, spec.cluster_name)


def daemonset(clients: Clients) -> dict[str, Any]:
    ds = aws_node.read(clients.apps)
    assert ds is not None, "aws-node exists"
    return ds


def calls(twin: Twin, action: str) -> int:
    return sum(1 for r in twin.eks.request_log if r.access_key == DAG_ACCESS_KEY and r.action == action)


def rolled_out(clients: Clients, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (verdict := checks.run("aws_node_rolled_out", clients)).status != checks.DONE:
        assert verdict.status != checks.FAILED and time.monotonic() < deadline, verdict.message
        time.sleep(0.1)


def test_the_snapshot_records_the_addon(snapshot: dict[str, Any]) -> None:
    assert snapshot["vpc_cni_addon"] == {"name": "vpc-cni", "version": "v1.18.5-eksbuild.1",
                                         "configurationValues": json.dumps(SCENARIO_CONFIG),
                                         "serviceAccountRoleArn": None}
    assert not aws_node.is_fenced({"spec": snapshot["aws_node"]["spec"]})


def test_a_dry_run_fence_changes_nothing(twin: Twin, clients: Clients, spec: MigrationSpec) -> None:
    changes = step(AwsNodeFenceOperator, MigrationSpec.from_params({**PARAMS, "dry_run": True}))
    assert [(c.action, c.kind, c.name, c.dry_run) for c in changes] == [("update", "Addon", "vpc-cni", True)]
    assert addons.configuration(addon(clients, spec)) == SCENARIO_CONFIG
    assert calls(twin, "UpdateAddon") == 0


def test_the_fence_goes_through_the_addon(twin: Twin, clients: Clients, spec: MigrationSpec) -> None:
    changes = step(AwsNodeFenceOperator, spec)
    assert [(c.action, c.kind) for c in changes] == [("update", "Addon")]
    found = addon(clients, spec)
    assert found is not None and found["status"] == "ACTIVE"
    values = addons.configuration(found)
    assert addons.has_fence(values) and values["env"] == SCENARIO_CONFIG["env"], "other values kept"
    assert aws_node.is_fenced(daemonset(clients))
    terms = aws_node.node_selector_terms(aws_node.affinity_of(daemonset(clients)))
    assert {"key": CNI_LABEL, "operator": "In", "values": [AWS_CNI]} in terms[0]["matchExpressions"]
    assert len(terms[0]["matchExpressions"]) == 4, "the add-on's default terms kept"
    rolled_out(clients)
    assert step(AwsNodeFenceOperator, spec) == [], "the second fence changes nothing"
    assert calls(twin, "UpdateAddon") == 1


def test_a_direct_edit_of_aws_node_is_reverted_by_the_next_fence(twin: Twin, clients: Clients,
                                                                  spec: MigrationSpec) -> None:
    aws_node.restore(clients.apps, {"spec": {"template": {"spec": {"affinity": None}}}})  # a direct patch
    assert not aws_node.is_fenced(daemonset(clients))
    changes = step(AwsNodeFenceOperator, spec)
    assert [(c.action, c.kind) for c in changes] == [("update", "Addon")]
    assert aws_node.is_fenced(daemonset(clients))
    rolled_out(clients)


def test_rollback_puts_back_the_recorded_configuration(clients: Clients, spec: MigrationSpec,
                                                        snapshot: dict[str, Any]) -> None:
    changes = step(AwsNodeRestoreOperator, spec, snapshot)
    assert [(c.action, c.kind) for c in changes] == [("update", "Addon")]
    assert addons.configuration(addon(clients, spec)) == SCENARIO_CONFIG
    assert aws_node.affinity_of(daemonset(clients)) == aws_node.affinity_of(snapshot["aws_node"])
    assert step(AwsNodeRestoreOperator, spec, snapshot) == []
    rolled_out(clients)


def test_the_decommission_deletes_the_addon_and_aws_node(clients: Clients, spec: MigrationSpec) -> None:
    step(AwsNodeFenceOperator, spec)
    changes = step(AwsNodeDeleteOperator, spec)
    assert [(c.action, c.kind) for c in changes] == [("delete", "Addon")]
    assert addon(clients, spec) is None
    assert aws_node.read(clients.apps) is None
    assert step(AwsNodeDeleteOperator, spec) == [], "nothing left to delete"


def test_rollback_after_the_decommission_recreates_the_addon(twin: Twin, clients: Clients, spec: MigrationSpec,
                                                              snapshot: dict[str, Any]) -> None:
    changes = step(AwsNodeRestoreOperator, spec, snapshot)
    assert [(c.action, c.kind, c.after["version"]) for c in changes] == [("create", "Addon", "v1.18.5-eksbuild.1")]
    found = addon(clients, spec)
    assert found is not None
    assert (found["status"], found["addonVersion"]) == ("ACTIVE", "v1.18.5-eksbuild.1")
    assert addons.configuration(found) == SCENARIO_CONFIG
    assert daemonset(clients)["spec"]["template"]["spec"]["containers"] == \
        snapshot["aws_node"]["spec"]["template"]["spec"]["containers"]
    assert aws_node.affinity_of(daemonset(clients)) == aws_node.affinity_of(snapshot["aws_node"])
    rolled_out(clients)
    assert step(AwsNodeRestoreOperator, spec, snapshot) == []


def test_the_iam_policy_allows_the_addon_actions_and_names_those_used_only_here(twin: Twin) -> None:
    policy = json.loads((ROOT / "deploy" / "iam-policy.json").read_text())
    allowed = {a for s in policy["Statement"] if s["Effect"] == "Allow"
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    called = {r.iam_action for r in twin.eks.request_log if r.access_key == DAG_ACCESS_KEY}
    assert called <= allowed, f"called {sorted(called - allowed)} beyond the policy"
    addon_actions = {a for a in called if a.endswith("Addon")}
    assert addon_actions == addons.ALWAYS_CALLED_ACTIONS | addons.ADDON_ONLY_ACTIONS
    assert {a for a in allowed if a.endswith("Addon")} == addon_actions, "no add-on action is unused"
