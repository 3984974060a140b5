"""The in-place node roll's termination against the twin's EC2 API, through the DAG's clients (built from
the connections, with their retry configuration): throttling costs time, not the step; a refusal fails at
once with what to grant; an instance already gone counts as terminated; and the group replaces the node."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cilium_migration import node_roll, nodes
from cilium_migration.clients import Clients
from cilium_migration.errors import PermanentError
from cilium_migration.readiness import name_of, node_ready
from twin.cluster import Twin

GROUP = "ng-1"


@pytest.fixture
def clients(twin: Twin) -> Iterator[Clients]:
    """Fresh clients per test, from the connections; the faults are cleared afterwards."""
    yield Clients(aws_conn_id="aws_default", kubernetes_conn_id="kubernetes_default", region="us-west-1")
    twin.faults.update({"ec2": []})


def ec2_calls(twin: Twin) -> list[int]:
    return [r.code for r in twin.eks.request_log if r.iam_action == "ec2:TerminateInstances"]


def test_throttling_is_retried_by_the_client_and_the_group_replaces_the_node(twin: Twin, clients: Clients) -> None:
    before = {name_of(n) for n in nodes.nodegroup_nodes(clients.core, [GROUP])}
    node = nodes.nodegroup_nodes(clients.core, [GROUP])[0]
    calls = len(ec2_calls(twin))
    twin.faults.update({"ec2": [{"action": "TerminateInstances", "code": "RequestLimitExceeded", "count": 2}]})
    changes = node_roll.terminate(clients.ec2, clients.core, node)
    assert [c.action for c in changes] == ["annotate", "terminate"]
    assert ec2_calls(twin)[calls:] == [503, 503, 200], "two throttled answers, then the termination"
    deadline = time.monotonic() + 60  # a guard against a hang, not a timing assertion
    while True:
        now = nodes.nodegroup_nodes(clients.core, [GROUP])
        names = {name_of(n) for n in now}
        if name_of(node) not in names and len(now) == len(before) and all(node_ready(n) for n in now):
            break
        assert time.monotonic() < deadline, f"not replaced: {sorted(names)}"
        time.sleep(0.2)
    assert len(names - before) == 1, "one new node took the terminated one's place"


def test_a_refusal_fails_at_once_naming_the_permission(twin: Twin, clients: Clients) -> None:
    node = nodes.nodegroup_nodes(clients.core, [GROUP])[0]
    twin.faults.update({"ec2": [{"action": "TerminateInstances", "code": "UnauthorizedOperation", "count": 5}]})
    with pytest.raises(PermanentError, match="ec2:TerminateInstances"):
        node_roll.terminate(clients.ec2, clients.core, node)


def test_an_instance_already_gone_counts_as_terminated(clients: Clients) -> None:
    node = nodes.nodegroup_nodes(clients.core, [GROUP])[0]
    gone = {**node, "spec": {**node["spec"], "providerID": "aws:///us-west-1a/i-0000000000000dead"}}
    changes = node_roll.terminate(clients.ec2, clients.core, gone)
    assert [c.action for c in changes] == ["annotate"], "nothing to terminate: EC2 does not know it"
