"""The goldpinger mesh verdict: every instance answered, N x N fresh OK pings, verdict per CNI pair."""

from __future__ import annotations

import json
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cilium_migration.goldpinger import CheckAllError, check_all_responses, object_members
from cilium_migration.mesh import (
    FAILED_SAMPLE,
    NODE_MATRIX_MAX,
    PROBLEM_SAMPLE,
    CheckAllEntry,
    as_entry,
    evaluate,
    evaluate_responses,
    pair_name,
    parse_time,
)

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


# ---- streamed answers, bounded verdicts, restarts --------------------------------------------------

def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
@pytest.mark.parametrize("indent", [None, 2])
def test_a_streamed_answer_is_judged_as_the_whole_one(size: int, indent: int | None) -> None:
    data = answer(broken={("gp-a", "gp-c")})
    data = {"hosts": [{"podName": "gp-a"}], "responses": data["responses"], "after": [1, {"x": "}"}]}
    streamed = evaluate_responses(object_members(chunked(json.dumps(data, indent=indent).encode(), size),
                                                 "responses", CheckAllEntry),
                                  pods(), NODES, started_at=START)
    whole = evaluate(data, pods(), NODES, started_at=START)
    assert streamed.to_dict() == whole.to_dict()
    assert not streamed.healthy and streamed.failing_pairs() == ["aws-cni<->cilium"]


@pytest.mark.parametrize("text", [b'{"responses": {"gp-a": {"OK": true', b'{"responses": [1, 2]}',
                                  b'{"responses": {"gp-a": {"OK": true}}', b"not json"])
def test_an_answer_cut_short_or_not_json_is_an_error(text: bytes) -> None:
    with pytest.raises(CheckAllError):
        list(object_members(chunked(text, 5), "responses", CheckAllEntry))


def test_a_stream_is_read_a_member_at_a_time() -> None:
    body = json.dumps(answer()).encode()
    read: list[int] = []

    def chunks() -> Iterator[bytes]:
        for chunk in chunked(body, 16):
            read.append(len(chunk))
            yield chunk

    members = object_members(chunks(), "responses", CheckAllEntry)
    next(members)
    assert sum(read) < len(body) / 2, "the first member came before the whole answer was read"


def big_mesh(n: int, *, broken: bool) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    names = [f"gp-{i:03d}" for i in range(n)]
    nodes = [{"metadata": {"name": f"node-{i}", "labels": {"cni": "aws-cni"} if i % 2 else {}}} for i in range(n)]
    pod_list = [{"metadata": {"name": name}, "spec": {"nodeName": f"node-{i}"},
                 "status": {"phase": "Running", "podIP": f"10.1.{i // 250}.{i % 250}"}}
                for i, name in enumerate(names)]
    result = {"OK": not broken, "PingTime": FRESH, "error": "timeout" if broken else None}
    data = {"responses": {src: {"OK": True, "response": {"podResults": {dst: result for dst in names}}}
                          for src in names}}
    return data, pod_list, nodes


def test_a_failing_mesh_of_many_pods_is_counted_whole_and_sampled_bounded() -> None:
    data, pod_list, nodes = big_mesh(80, broken=True)
    v = evaluate(data, pod_list, nodes, started_at=START)
    out = v.to_dict()
    assert not v.healthy and v.problem_count == 80 * 80
    assert len(v.problems) == PROBLEM_SAMPLE
    assert sum(p["failed_count"] for p in out["pairs"].values()) == 80 * 80
    assert all(len(p["failed"]) <= FAILED_SAMPLE for p in out["pairs"].values())
    assert out["matrix"] == {"cnis": ["aws-cni", "cilium"], "ok": [[0, 0], [0, 0]],
                             "failed": [[1600, 1600], [1600, 1600]]}
    assert "node_matrix" not in out, f"more than {NODE_MATRIX_MAX} nodes: no per-node matrix"
    assert len(out["failing_nodes"]) == 20 and out["failing_nodes"][0]["failed"] == 2 * 80 - 1
    assert len(json.dumps(out)) < 20_000


def test_a_small_mesh_has_a_matrix_per_node_grouped_by_cni() -> None:
    out = evaluate(answer(broken={("gp-a", "gp-c")}), pods(), NODES, started_at=START).to_dict()
    assert out["node_matrix"]["nodes"] == ["old-1", "old-2", "new-1"]
    assert out["node_matrix"]["cnis"] == ["aws-cni", "aws-cni", "cilium"]
    assert out["node_matrix"]["failed"] == [[0, 0, 1], [0, 0, 0], [0, 0, 0]]
    assert out["node_matrix"]["ok"] == [[1, 1, 0], [1, 1, 1], [1, 1, 1]]
    assert out["matrix"] == {"cnis": ["aws-cni", "cilium"], "ok": [[4, 1], [2, 1]], "failed": [[0, 1], [0, 0]]}
    assert out["pods_by_cni"] == {"aws-cni": 2, "cilium": 1}
    assert out["pairs"]["aws-cni<->cilium"] == {"ok": 3, "failed": ["gp-a -> gp-c: ping failed (no detail)"],
                                                "failed_count": 1, "healthy": False}


def test_after_a_restart_only_the_restarted_pods_are_judged() -> None:
    """A pod from before the restart, terminating, answers with failures and is pinged with failures; its
    IP is already a restarted pod's. None of it counts: the mesh of the restarted pods is healthy."""
    old = {"metadata": {"name": "gp-old", "deletionTimestamp": "2026-11-28T12:00:00Z"}, "spec": {"nodeName": "old-1"},
           "status": {"phase": "Running", "podIP": "10.0.0.0"}}  # gp-a's IP
    data = answer()
    data["responses"]["gp-old"] = {"OK": True, "PodIP": "10.0.0.0", "response": {"podResults": {
        n: {"OK": False, "PingTime": FRESH, "error": "timeout"} for n in [*PLACEMENT, "gp-old"]}}}
    for entry in data["responses"].values():
        entry["response"]["podResults"]["gp-old"] = {"OK": False, "PingTime": STALE, "PodIP": "10.0.0.0"}
    v = evaluate(data, [*pods(), old], NODES, started_at=START)
    assert v.healthy, v.problems
    assert v.expected == sorted(PLACEMENT) and sum(p.ok for p in v.pairs.values()) == 9


def test_an_instance_answering_twice_is_judged_once() -> None:
    data = answer()
    entries = [*data["responses"].items(), ("gp-a", {"OK": False})]
    v = evaluate_responses(((k, as_entry(e)) for k, e in entries), pods(), NODES, started_at=START)
    assert v.healthy


def test_a_ping_time_that_is_not_text_is_no_ping_time() -> None:
    data = answer()
    data["responses"]["gp-a"]["response"]["podResults"]["gp-b"]["PingTime"] = {"seconds": 1}
    v = evaluate(data, pods(), NODES, started_at=START)
    assert not v.healthy and v.problems == ["gp-a -> gp-b (aws-cni<->aws-cni): no PingTime"]


def test_a_healthy_mesh_of_many_pods_counts_every_ping() -> None:
    data, pod_list, nodes = big_mesh(80, broken=False)
    v = evaluate(data, pod_list, nodes, started_at=START)
    assert v.healthy, v.problems[:3]
    assert {p: pv.ok for p, pv in v.pairs.items()} == {
        "aws-cni<->aws-cni": 1600, "aws-cni<->cilium": 3200, "cilium<->cilium": 1600}
    assert v.to_dict()["matrix"]["ok"] == [[1600, 1600], [1600, 1600]]
    late = evaluate(data, pod_list, nodes, started_at=START + timedelta(minutes=5))
    assert not late.healthy and late.problem_count == 80 * 80 and "stale PingTime" in late.problems[0]


class FakeResponse:
    """What the Kubernetes client returns with ``_preload_content=False``: a urllib3 response."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self.chunks, self.error, self.released, self.closed = chunks, error, False, False

    def stream(self, amt: int) -> Iterator[bytes]:
        yield from self.chunks
        if self.error is not None:
            raise self.error

    def release_conn(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


class FakeCore:
    def __init__(self, response: FakeResponse) -> None:
        self.response = response

    def connect_get_namespaced_service_proxy_with_path(self, name: str, namespace: str, path: str,
                                                       _preload_content: bool = True) -> FakeResponse:
        assert (name, path, _preload_content) == ("goldpinger:8080", "check_all", False)
        return self.response


def test_check_all_is_streamed_from_the_proxy_and_the_connection_given_back() -> None:
    response = FakeResponse(chunked(json.dumps(answer()).encode(), 10))
    v = evaluate_responses(check_all_responses(FakeCore(response), "default"), pods(), NODES, started_at=START)
    assert v.healthy and response.released and not response.closed


def test_a_connection_broken_off_mid_answer_is_an_unreadable_answer() -> None:
    body = json.dumps(answer()).encode()
    response = FakeResponse([body[:100]], ConnectionResetError("reset by peer"))
    with pytest.raises(CheckAllError, match="reset by peer"):
        list(check_all_responses(FakeCore(response), "default"))
    assert response.closed
