"""The goldpinger mesh verdict: every instance answered, N x N fresh OK pings, verdict per CNI pair."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cilium_migration.mesh import evaluate, pair_name, parse_time

START = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
FRESH = (START + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
STALE = (START - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")

NODES = [
    {"metadata": {"name": "old-1", "labels": {"cni": "aws-cni"}}},
    {"metadata": {"name": "old-2", "labels": {"cni": "aws-cni"}}},
    {"metadata": {"name": "new-1", "labels": {}}},
]
PLACEMENT = {"gp-a": "old-1", "gp-b": "old-2", "gp-c": "new-1"}


def pods(placement: dict[str, str] = PLACEMENT, phase: str = "Running") -> list[dict[str, Any]]:
    return [{"metadata": {"name": n}, "spec": {"nodeName": node},
             "status": {"phase": phase, "podIP": f"10.0.0.{i}"}}
            for i, (n, node) in enumerate(sorted(placement.items()))]


def answer(names: list[str] | None = None, *, broken: AbstractSet[tuple[str, str]] = frozenset(),
           ping_time: str = FRESH, skip: AbstractSet[str] = frozenset(), drop: AbstractSet[tuple[str, str]] = frozenset(),
           ) -> dict[str, Any]:
    names = names if names is not None else sorted(PLACEMENT)
    responses = {}
    for src in names:
        if src in skip:
            continue
        results = {dst: {"OK": (src, dst) not in broken, "PingTime": ping_time, "PodIP": "x",
                         "response-time-ms": 1} for dst in names if (src, dst) not in drop}
        responses[src] = {"OK": True, "PodIP": "x", "response": {"podResults": results}}
    return {"responses": responses, "hosts": []}


def test_a_full_mesh_of_fresh_ok_pings_is_healthy_with_a_verdict_per_cni_pair() -> None:
    v = evaluate(answer(), pods(), NODES, started_at=START)
    assert v.healthy, v.problems
    assert {p: pv.ok for p, pv in v.pairs.items()} == {
        "aws-cni<->aws-cni": 4, "aws-cni<->cilium": 4, "cilium<->cilium": 1}
    assert "9 pings OK" in v.summary()


@pytest.mark.parametrize(("kwargs", "problem", "failing"), [
    pytest.param({"broken": {("gp-a", "gp-c")}}, "gp-a -> gp-c", ["aws-cni<->cilium"], id="cross-cni-ping-fails"),
    pytest.param({"broken": {("gp-c", "gp-c")}}, "gp-c -> gp-c", ["cilium<->cilium"], id="cilium-self-ping-fails"),
    pytest.param({"ping_time": STALE}, "stale PingTime", ["aws-cni<->aws-cni", "aws-cni<->cilium",
                                                          "cilium<->cilium"], id="stale-results"),
    pytest.param({"skip": {"gp-b"}}, "gp-b: did not answer", [], id="instance-silent"),
    pytest.param({"drop": {("gp-a", "gp-b")}}, "gp-a -> gp-b: no result", ["aws-cni<->aws-cni"],
                 id="missing-entry"),
])
def test_unhealthy_meshes_name_the_problem_and_the_failing_pairs(kwargs: dict, problem: str,
                                                                 failing: list[str]) -> None:
    v = evaluate(answer(**kwargs), pods(), NODES, started_at=START)
    assert not v.healthy
    assert any(problem in p for p in v.problems), v.problems
    assert sorted(v.failing_pairs()) == failing


def test_a_pending_goldpinger_pod_makes_the_mesh_unhealthy() -> None:
    extra = pods() + [{"metadata": {"name": "gp-d"}, "spec": {}, "status": {"phase": "Pending"}}]
    v = evaluate(answer(), extra, NODES, started_at=START)
    assert not v.healthy and "gp-d: not Running (Pending)" in v.problems


def test_terminating_pods_and_unknown_peers_are_not_part_of_the_mesh() -> None:
    gone = pods() + [{"metadata": {"name": "gp-old", "deletionTimestamp": "x"}, "spec": {},
                      "status": {"phase": "Running"}}]
    data = answer(sorted(PLACEMENT) + ["gp-old"])
    assert evaluate(data, gone, NODES, started_at=START).healthy


def test_results_keyed_by_pod_ip_are_matched() -> None:
    data = answer()
    by_ip = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods()}
    for entry in data["responses"].values():
        entry["response"]["podResults"] = {
            f"host-{k}": {**v, "PodIP": by_ip[k]} for k, v in entry["response"]["podResults"].items()}
    assert evaluate(data, pods(), NODES, started_at=START).healthy


def test_no_goldpinger_pods_is_not_healthy() -> None:
    v = evaluate({"responses": {}}, [], NODES, started_at=START)
    assert not v.healthy and v.problems == ["no Running goldpinger pods"]


def test_ping_time_formats() -> None:
    assert parse_time("2026-11-28T12:00:01.123456789Z") == START + timedelta(seconds=1, microseconds=123456)
    assert parse_time("2026-11-28T12:00:00Z") == START
    assert parse_time("garbage") is None and parse_time(None) is None


def test_pair_names_are_unordered() -> None:
    assert pair_name("cilium", "aws-cni") == pair_name("aws-cni", "cilium") == "aws-cni<->cilium"


def test_pods_on_old_node_groups_count_as_aws_cni_before_the_labels_exist() -> None:
    unlabelled = [{"metadata": {"name": n, "labels": {"eks.amazonaws.com/nodegroup": "ng-1"}}}
                  for n in ("old-1", "old-2")] + [NODES[2]]
    v = evaluate(answer(), pods(), unlabelled, started_at=START, aws_nodegroups=["ng-1"])
    assert v.healthy and set(v.pairs) == {"aws-cni<->aws-cni", "aws-cni<->cilium", "cilium<->cilium"}
