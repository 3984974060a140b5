"""API faults cost time, never the step: the plugin's clients against a twin that injects them.

The clients are built from the Airflow connections, as a task builds them (``KubernetesHook``,
``EksHook``), with a short retry budget so the tests stay fast. Covers: a Kubernetes API outage shorter
than the budget is waited out by a read and by a check; one longer than the budget ends in the
server's 503, which the task's retry policy retries; a 429 burst is retried after its Retry-After; a
403 or a 404 fails at once, without a retry; a PodDisruptionBudget's 429 on an eviction reaches the
eviction loop at once, with its message; EKS throttling is absorbed by botocore's retries; an EKS
``ResourceInUseException`` (an update in progress) is a temporary error the task's retry gets past.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from airflow.sdk.definitions.retry_policy import RetryAction
from kubernetes.client.exceptions import ApiException

from cilium_migration import checks, nodegroups, nodes, workloads
from cilium_migration.clients import Clients
from cilium_migration.errors import Kind, TemporaryError, classify
from cilium_migration.readiness import name_of
from cilium_migration.retry_policy import RETRY_POLICY
from cilium_migration.retrying import RetrySettings
from tests.integration.conftest import connected_twin
from twin.cluster import Twin

CLUSTER, REGION, OLD_GROUP = "dc-migrate", "us-west-1", "ng-1"
BUDGET = RetrySettings(budget_s=8.0, backoff_base_s=0.2, backoff_max_s=0.5)


@pytest.fixture(scope="module")
def twin() -> Iterator[Twin]:
    with connected_twin() as t:
        yield t


@pytest.fixture
def clients(twin: Twin) -> Iterator[Clients]:
    """Fresh clients per test, from the connections; the faults are cleared afterwards."""
    yield Clients(aws_conn_id="aws_default", kubernetes_conn_id="kubernetes_default", region=REGION,
                  retry=BUDGET)
    twin.faults.update({"api": [], "eks": [], "blocked_pdbs": []})


def codes_since(twin: Twin, seen: int, resource: str = "nodes") -> list[int]:
    return [r.code for r in twin.api.request_log[seen:] if r.resource == resource]


# ---- Kubernetes API ------------------------------------------------------------------------------

def test_a_two_second_outage_is_waited_out_by_a_read(twin: Twin, clients: Clients) -> None:
    clients.core  # noqa: B018  (the client is built before the outage: only the read is timed)
    seen = len(twin.api.request_log)
    twin.faults.update({"api": [{"path": "^/api", "status": 503, "seconds": 2}]})
    started = time.monotonic()
    found = nodes.list_nodes(clients.core)
    took = time.monotonic() - started
    assert len(found) == 3
    assert 1.9 <= took < 5, f"the read waited out the outage and no longer: {took:.1f}s"
    codes = codes_since(twin, seen)
    assert codes[-1] == 200 and set(codes[:-1]) == {503} and len(codes) >= 3


def test_a_check_run_during_an_outage_gets_its_verdict(twin: Twin, clients: Clients) -> None:
    twin.faults.update({"api": [{"path": "^/api/v1/nodes", "status": 503, "seconds": 1.5}]})
    verdict = checks.run("nodes_registered", clients, nodegroups=[OLD_GROUP], count=3)
    assert verdict.status == checks.DONE, verdict.message


def test_an_outage_longer_than_the_budget_ends_in_the_servers_503_which_the_task_retries(
        twin: Twin) -> None:
    short = Clients(region=REGION, retry=RetrySettings(budget_s=1.0, backoff_base_s=0.2, backoff_max_s=0.3))
    short.core  # noqa: B018
    twin.faults.update({"api": [{"path": "^/api/v1/nodes", "status": 503, "seconds": 30}]})
    started = time.monotonic()
    with pytest.raises(ApiException) as err:
        nodes.list_nodes(short.core)
    assert err.value.status == 503 and 0.9 <= time.monotonic() - started < 3
    assert classify(err.value) is Kind.TEMPORARY
    assert RETRY_POLICY.evaluate(err.value, try_number=1, max_tries=4).action is RetryAction.RETRY
    twin.faults.update({"api": []})


def test_a_429_burst_is_retried_after_its_retry_after(twin: Twin, clients: Clients) -> None:
    clients.core  # noqa: B018
    seen = len(twin.api.request_log)
    twin.faults.update({"api": [{"path": "^/api/v1/nodes", "status": 429, "count": 2, "retry_after": 1}]})
    started = time.monotonic()
    assert len(nodes.list_nodes(clients.core)) == 3
    assert time.monotonic() - started >= 2.0, "waited Retry-After (1 s) twice"
    assert codes_since(twin, seen) == [429, 429, 200]


@pytest.mark.parametrize("status", [pytest.param(403, id="forbidden"), pytest.param(422, id="invalid")])
def test_a_permanent_error_fails_at_once(twin: Twin, clients: Clients, status: int) -> None:
    clients.core  # noqa: B018
    seen = len(twin.api.request_log)
    twin.faults.update({"api": [{"path": "^/api/v1/nodes", "status": status, "count": 5}]})
    started = time.monotonic()
    with pytest.raises(ApiException) as err:
        nodes.list_nodes(clients.core)
    assert err.value.status == status and time.monotonic() - started < 0.5
    assert codes_since(twin, seen) == [status], "asked once"
    assert RETRY_POLICY.evaluate(err.value, try_number=1, max_tries=4).action is RetryAction.FAIL


def test_a_missing_object_is_a_404_at_once(twin: Twin, clients: Clients) -> None:
    clients.core  # noqa: B018
    seen = len(twin.api.request_log)
    with pytest.raises(ApiException) as err:
        clients.core.read_node("no-such-node")
    assert err.value.status == 404 and codes_since(twin, seen) == [404]


def test_a_budgets_refusal_reaches_the_eviction_loop_at_once(twin: Twin, clients: Clients) -> None:
    """One eviction request per pass of ``workloads.evict``: the client adds no retries of its own, and
    the PodDisruptionBudget's message is what the step reports."""
    everywhere = [name_of(n) for n in nodes.list_nodes(clients.core)]
    web = next(p for p in workloads.workloads_on_nodes(clients.core, everywhere) if name_of(p).startswith("web-"))
    twin.faults.update({"blocked_pdbs": ["default/web"]})
    seen = len(twin.api.request_log)
    with pytest.raises(ApiException) as err:
        clients.core.create_namespaced_pod_eviction(name_of(web), "default", {
            "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name_of(web)}}, dry_run="All")
    assert err.value.status == 429 and "disruption budget" in err.value.body
    passes: list[float] = []

    def wait(seconds: float) -> None:
        passes.append(seconds)
        time.sleep(seconds)

    with pytest.raises(TemporaryError, match="PodDisruptionBudget forbids it"):
        workloads.evict(clients.core, web, deadline=time.monotonic() + 1.0, dry_run=True, sleep=wait)
    evictions = [r for r in twin.api.request_log[seen:] if r.subresource == "eviction"]
    assert [r.code for r in evictions] == [429] * (1 + len(passes) + 1)


# ---- EKS -----------------------------------------------------------------------------------------

def test_eks_throttling_is_absorbed_by_botocores_retries(twin: Twin, clients: Clients) -> None:
    twin.faults.update({"eks": [{"action": "DescribeNodegroup", "code": "ThrottlingException", "count": 2}]})
    seen = len(twin.eks.request_log)
    assert nodegroups.describe(clients.eks, CLUSTER, OLD_GROUP)["nodegroupName"] == OLD_GROUP
    assert [r.code for r in twin.eks.request_log[seen:] if r.action == "DescribeNodegroup"] == [400, 400, 200]


def test_an_update_in_progress_is_temporary_and_a_retry_gets_past_it(twin: Twin, clients: Clients) -> None:
    before = nodegroups.describe(clients.eks, CLUSTER, "ng-cilium")["scalingConfig"]["desiredSize"]
    twin.faults.update({"eks": [{"action": "UpdateNodegroupConfig", "code": "ResourceInUseException",
                                 "count": 1, "message": "update 4f2c in progress"}]})
    with pytest.raises(TemporaryError, match="update of the node group is in progress") as err:
        nodegroups.scale(clients.eks, CLUSTER, "ng-cilium", before + 1)
    assert RETRY_POLICY.evaluate(err.value, try_number=1, max_tries=4).action is RetryAction.RETRY
    changes = nodegroups.scale(clients.eks, CLUSTER, "ng-cilium", before + 1)  # the task's retry
    assert [c.after["desiredSize"] for c in changes] == [before + 1]
    nodegroups.scale(clients.eks, CLUSTER, "ng-cilium", before)
