"""Benchmark: a 1,000-node, 20,000-pod twin, listed over HTTP with the official client.

Builds the generated ``large`` scenario in process: the twin's controllers make every node and pod, their
passes run in turn from here with no delays (not in their threads), so the cluster is quiet while it
times with ``kubernetes`` 36:
``list_namespaced_pod`` and ``list_pod_for_all_namespaces`` with ``field_selector=spec.nodeName=<node>``
(median of ``--runs``), and a full pod list. Prints a plain table and the process's resident memory.
Goals: a selector list under 1 s, RSS under 2 GB.

    .venv/bin/python bench/twin_scale.py [--nodes 1000] [--pods 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twin.cluster import Twin  # noqa: E402
from twin.config import Timing  # noqa: E402
from twin.resources import PODS  # noqa: E402
from twin.scenarios.generate import generate_scenario  # noqa: E402

SELECTOR_GOAL_S = 1.0
RSS_GOAL_MB = 2048


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """Median seconds over ``runs`` calls, and the last result."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--build-timeout", type=float, default=600.0)
    args = ap.parse_args(argv)

    # No delays: the controllers' passes are run in turn, here, until the cluster has settled (the
    # same objects their threads would make, without thousands of event-driven passes over 20k pods).
    timing = Timing(
        node_provision_s=0,
        node_drain_s=0,
        pod_start_s=0,
        agent_ready_s=0,
        taint_removal_s=0,
        goldpinger_refresh_s=1.0,
        resync_s=1.0,
    )
    twin = Twin(generate_scenario(args.nodes, args.pods), timing=timing)
    start = time.perf_counter()
    twin.start(run_controllers=False)
    twin.settle_by_passes(args.build_timeout)
    build_s = time.perf_counter() - start
    try:
        rss_built = rss_mb()
        pods_total = len(twin.store.list(PODS)[0])
        node = twin.store.list(PODS, namespace="apps-0")[0][0]["spec"]["nodeName"]
        on_node = twin.store.list(PODS, node_name=node)[0]
        namespace = "apps-0"
        selector = f"spec.nodeName={node}"
        core = kubernetes.client.CoreV1Api(twin.kube_client())

        rows: list[tuple[str, str, str]] = []
        t, res = timed(lambda: core.list_namespaced_pod(namespace, field_selector=selector), args.runs)
        rows.append((f"list_namespaced_pod({namespace}, {selector})", f"{len(res.items)} pods", f"{t:.3f}"))
        t_all, res = timed(lambda: core.list_pod_for_all_namespaces(field_selector=selector), args.runs)
        rows.append((f"list_pod_for_all_namespaces({selector})", f"{len(res.items)} pods", f"{t_all:.3f}"))
        assert len(res.items) == len(on_node)
        t_raw, res = timed(
            lambda: json.loads(core.list_pod_for_all_namespaces(_preload_content=False).data),
            max(1, args.runs // 2),
        )
        rows.append(("list_pod_for_all_namespaces() raw JSON", f"{len(res['items'])} pods", f"{t_raw:.3f}"))
        t_full, res = timed(lambda: core.list_pod_for_all_namespaces(), 1)
        rows.append(("list_pod_for_all_namespaces() as models", f"{len(res.items)} pods", f"{t_full:.3f}"))
        rss_after = rss_mb()
    finally:
        twin.stop()

    width = max(len(r[0]) for r in rows)
    print(
        f"twin: {args.nodes} nodes, {pods_total} pods, built in {build_s:.1f} s "
        f"(median of {args.runs} runs below, seconds)"
    )
    print(f"{'call'.ljust(width)}  {'result':>12}  {'seconds':>8}")
    for call, result, secs in rows:
        print(f"{call.ljust(width)}  {result:>12}  {secs:>8}")
    print(f"{'resident memory after build (MB)'.ljust(width)}  {'':>12}  {rss_built:>8.0f}")
    print(f"{'resident memory after lists (MB)'.ljust(width)}  {'':>12}  {rss_after:>8.0f}")
    selector_ok = max(t, t_all) < SELECTOR_GOAL_S
    rss_ok = max(rss_built, rss_after) < RSS_GOAL_MB
    print(
        f"goals: selector list < {SELECTOR_GOAL_S:g} s: {'met' if selector_ok else 'MISSED'}; "
        f"RSS < {RSS_GOAL_MB} MB: {'met' if rss_ok else 'MISSED'}"
    )
    return 0 if selector_ok and rss_ok else 1


if __name__ == "__main__":
    sys.exit(main())
