"""Benchmark: ``twin.capture`` of a 1,000-node twin (issue 12's goal: under a minute, a few dozen requests).

The twin is built with no delays (its controllers' passes run in turn until it has settled), then captured
over HTTP through the official client and boto3, as ``python -m twin.capture`` does.

    .venv/bin/python -m bench.capture_scale [--nodes 1000] [--pods 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twin.capture import capture  # noqa: E402
from twin.cluster import Twin  # noqa: E402
from twin.config import Timing  # noqa: E402
from twin.scenarios.generate import generate_scenario  # noqa: E402

GOAL_S = 60.0
GOAL_REQUESTS = 48  # "a few dozen"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=20000)
    ap.add_argument("--build-timeout", type=float, default=600.0)
    args = ap.parse_args(argv)
    timing = Timing(node_provision_s=0, node_drain_s=0, pod_start_s=0, agent_ready_s=0, taint_removal_s=0,
                    goldpinger_refresh_s=1.0, resync_s=1.0)
    twin = Twin(generate_scenario(args.nodes, args.pods), timing=timing)
    twin.start(run_controllers=False)
    twin.settle_by_passes(args.build_timeout)
    try:
        start = time.perf_counter()
        scenario, requests = capture(twin.kube_client(), twin.boto3_client("eks"))
        seconds = time.perf_counter() - start
    finally:
        twin.stop()
    ok_s, ok_r = seconds <= GOAL_S, requests <= GOAL_REQUESTS
    print(f"capture of a {args.nodes}-node twin ({len(scenario['objects'])} objects): {seconds:.1f} s "
          f"(goal <= {GOAL_S:g} s) {'PASS' if ok_s else 'MISS'}")
    print(f"capture requests at {args.nodes} nodes: {requests} (goal <= {GOAL_REQUESTS}) {'PASS' if ok_r else 'MISS'}")
    return 0 if ok_s and ok_r else 1


if __name__ == "__main__":
    raise SystemExit(main())
