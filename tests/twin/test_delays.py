"""The delays the twin imposes, their critical path, and the realistic timing profile.

Covers: ``critical_path`` merging overlapping and touching intervals, keeping disjoint ones apart,
clipping to a window and leaving out what adds no time; a running twin recording its nodes' boots,
their agents' starts, Readiness and its pods' starts with exactly the configured durations, and a node
group's scale-up as a node boot; ``GET /_twin/delays`` and ``GET /_twin/critical-path`` (window, 400 on a
bad number); the realistic profile's documented numbers and ``python -m twin --timing``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from twin.__main__ import build_parser
from twin.cluster import Twin
from twin.config import FAST, PROFILES, Timing
from twin.delays import Delay, DelayLog, critical_path
from twin.resources import NODES


def delay(start: float, end: float, kind: str = "pod-start", subject: str = "x") -> Delay:
    return Delay(kind, subject, start, end - start)


# ---- the critical path: a pure function of the intervals --------------------------------------------


def test_overlapping_and_touching_intervals_merge_into_one_segment() -> None:
    path = critical_path([delay(0, 10, "node-boot"), delay(5, 12, "agent-start"), delay(12, 15, "node-ready")])

    assert [(s.start, s.end) for s in path.segments] == [(0, 15)]
    assert path.total_s == 15
    assert path.segments[0].summary() == "1 node-boot, 1 agent-start, 1 node-ready"


def test_disjoint_intervals_stay_apart_and_the_gap_is_not_counted() -> None:
    path = critical_path([delay(20, 25), delay(0, 10), delay(2, 4)])

    assert [(s.start, s.end) for s in path.segments] == [(0, 10), (20, 25)]
    assert path.total_s == 15
    assert len(path.segments[0].delays) == 2


def test_the_window_clips_intervals_and_drops_what_lies_outside() -> None:
    delays = [delay(0, 10), delay(30, 40), delay(50, 60), delay(70, 70)]

    path = critical_path(delays, since=5, until=35)

    assert [(s.start, s.end) for s in path.segments] == [(5, 10), (30, 35)]
    assert path.total_s == 10
    assert critical_path([delay(70, 70)]).segments == []


def test_the_delay_log_converts_monotonic_times_and_filters_by_window() -> None:
    log = DelayLog()
    first = log.record("node-boot", "node a", started=100.0, duration_s=7.5, waiting_on="node group ng")
    log.record("pod-start", "pod p", started=200.0, duration_s=1.0)

    assert first.duration_s == 7.5 and first.end == first.start + 7.5
    assert [d.subject for d in log.items(until=first.end)] == ["node a"]
    assert log.critical_path().total_s == 8.5


# ---- a running twin records what it imposed ---------------------------------------------------------


def test_a_settled_twin_recorded_each_boot_and_start_with_its_configured_duration(twin: Twin) -> None:
    delays = twin.delays()
    by_kind: dict[str, list[Delay]] = {}
    for d in delays:
        by_kind.setdefault(d.kind, []).append(d)
    nodes = {n["metadata"]["name"] for n in twin.store.iter_all(NODES)}

    assert {d.subject for d in by_kind["node-boot"]} == {f"node {n}" for n in nodes}
    assert {d.duration_s for d in by_kind["node-boot"]} == {FAST.node_provision_s}
    assert {d.duration_s for d in by_kind["agent-start"]} == {FAST.pod_start_s}
    assert {d.duration_s for d in by_kind["pod-start"]} == {FAST.pod_start_s}
    assert {d.duration_s for d in by_kind["node-ready"]} == {FAST.agent_ready_s}
    assert all(d.waiting_on for d in delays)
    boot = min(by_kind["node-boot"], key=lambda d: d.start)
    assert "ng-1" in boot.waiting_on


def test_a_node_group_scale_up_is_recorded_as_a_node_boot(twin: Twin) -> None:
    before = {n["metadata"]["name"] for n in twin.store.iter_all(NODES)}
    eks = twin.boto3_client("eks")
    cluster = twin.cluster_name
    eks.update_nodegroup_config(clusterName=cluster, nodegroupName="ng-cilium",
                                scalingConfig={"minSize": 0, "maxSize": 3, "desiredSize": 1})
    try:
        def new_boots() -> list[Delay]:
            new = {f"node {n['metadata']['name']}" for n in twin.store.iter_all(NODES)} - {f"node {n}" for n in before}
            return [d for d in twin.delays() if d.kind == "node-boot" and d.subject in new]

        twin.wait_for(lambda: bool(new_boots()), 30, "the new node's boot")
        boots = new_boots()
        assert len(boots) == 1
        assert boots[0].duration_s == FAST.node_provision_s
        assert "ng-cilium" in boots[0].waiting_on
    finally:
        eks.update_nodegroup_config(clusterName=cluster, nodegroupName="ng-cilium",
                                    scalingConfig={"minSize": 0, "maxSize": 3, "desiredSize": 0})
        twin.wait_for(lambda: {n["metadata"]["name"] for n in twin.store.iter_all(NODES)} == before, 30,
                      "the new node to go")
    drains = [d for d in twin.delays() if d.kind == "node-drain"]
    assert drains and {d.duration_s for d in drains} == {FAST.node_drain_s}


# ---- the admin endpoints ----------------------------------------------------------------------------


def get(twin: Twin, path: str) -> Any:
    request = urllib.request.Request(f"{twin.kube_url}{path}", headers={"Authorization": f"Bearer {twin.token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def test_the_delays_and_the_critical_path_are_served(twin: Twin) -> None:
    delays = get(twin, "/_twin/delays")["items"]
    path = get(twin, "/_twin/critical-path")

    assert len(delays) == len(twin.delays())
    assert {"kind", "subject", "start", "end", "duration_s", "waiting_on"} <= set(delays[0])
    assert path["total_s"] == pytest.approx(twin.critical_path().total_s)
    assert sum(s["duration_s"] for s in path["segments"]) == pytest.approx(path["total_s"])
    assert all(s["delays"] and s["summary"] for s in path["segments"])


def test_the_critical_path_endpoint_takes_a_window(twin: Twin) -> None:
    first = twin.delays()[0]
    since, until = first.start, first.start + first.duration_s / 2

    path = get(twin, f"/_twin/critical-path?since={since}&until={until}")

    assert path["total_s"] == pytest.approx(first.duration_s / 2)
    assert (path["since"], path["until"]) == (since, until)
    with pytest.raises(urllib.error.HTTPError) as err:
        get(twin, "/_twin/critical-path?since=yesterday")
    assert err.value.code == 400


# ---- the realistic profile ---------------------------------------------------------------------------


def test_the_realistic_profile_has_eks_like_delays() -> None:
    realistic = Timing.realistic()

    assert realistic.node_provision_s == 75.0  # EKS managed node group: about 1-2 min to a Ready node
    assert realistic.pod_start_s == 6.0  # a pod with cached images: about 5-10 s
    assert realistic.agent_ready_s == 5.0
    assert realistic.node_drain_s == 60.0
    assert realistic.goldpinger_refresh_s == 5.0  # the migration's goldpinger REFRESH_INTERVAL
    assert PROFILES["realistic"] == realistic
    assert PROFILES["fast"] == Timing().scaled(0.15)


def test_the_cli_selects_a_timing_profile() -> None:
    assert build_parser().parse_args(["--timing", "realistic"]).timing == "realistic"
    assert build_parser().parse_args([]).timing == "default"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--timing", "leisurely"])
