"""Mesh verdict at scale: the time and peak memory of the ``mesh_healthy`` check over N goldpinger pods.

The twin (this process) runs N - 5 nodes, so N goldpinger pods (a DaemonSet pod per node and the
Deployment's 5), built with its controllers' passes run in turn; goldpinger's ``/check_all`` answer (N x
N results: about 200 MB of JSON at 1,000 pods) is rendered once beforehand and served as it is, so what
is timed is the check, not the twin making the answer (real goldpinger makes it on its own).

The check runs in a fresh interpreter (``--judge``), as a sensor's poke would: the same requests
through the official client (list the goldpinger pods, read its DaemonSet and Deployment, list the
nodes, stream ``/check_all`` through the service proxy) and the verdict. Figures:

- the median wall time of ``--runs`` checks, with the judging process's CPU time beside it (the wall
  time less the waits that a busy machine adds; the twin works in another process) and the time of the
  ``/check_all`` part alone (streamed and judged, the pods and nodes listed beforehand);
- the machine's load average (other work on it slows every figure);
- that process's peak resident memory (``VmHWM`` of ``/proc/self/status``: interpreter and imports
  included, so an upper bound on what the check adds).

    .venv/bin/python -m bench.mesh_verdict [--pods 200,1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TIME_GOAL_S = 3.0
RSS_GOAL_MB = 300.0
DEPLOYMENT_PODS = 5  # goldpinger's Deployment replicas (the runbook's manifest)


def peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``: unlike ``ru_maxrss``, not inherited across the
    fork and exec that started it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def judge(url: str, token: str, runs: int) -> dict[str, Any]:
    """In the fresh interpreter: run the check ``runs`` times; seconds of each, peak RSS."""
    import kubernetes

    from cilium_migration import checks
    from cilium_migration.clients import Clients

    configuration = kubernetes.client.Configuration()
    configuration.host = url
    configuration.api_key = {"BearerToken": f"Bearer {token}", "authorization": f"Bearer {token}"}
    clients = Clients(api_client=kubernetes.client.ApiClient(configuration), eks=object())
    rss_before = peak_rss_mb()
    times, cpu, verdict = [], [], None
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        verdict = checks.run("mesh_healthy", clients, namespace="default", tolerance_s=86400.0)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    assert verdict is not None
    from datetime import UTC, datetime

    from cilium_migration import goldpinger, mesh, nodes

    pods, all_nodes = goldpinger.pods(clients.core, "default"), nodes.list_nodes(clients.core)
    stream_times = []
    for _ in range(runs):  # the part that grows with N x N: /check_all streamed and judged
        start = time.perf_counter()
        mesh.evaluate_responses(goldpinger.check_all_responses(clients.core, "default"), pods, all_nodes,
                                started_at=datetime.now(UTC), tolerance_s=86400.0)
        stream_times.append(time.perf_counter() - start)
    return {"seconds": times, "cpu_seconds": cpu, "stream_seconds": stream_times, "rss_mb": peak_rss_mb(),
            "rss_before_mb": rss_before, "status": verdict.status, "message": verdict.message[:300],
            "xcom_bytes": len(json.dumps(verdict.data))}


def measure(pods: int, runs: int, *, log: Callable[[str], None]) -> dict[str, Any]:
    from bench.requests_per_check import built_twin

    log(f"  building a twin with {pods} goldpinger pods ...")
    with built_twin(pods - DEPLOYMENT_PODS, workload_pods_per_node=0) as twin:
        model = twin.goldpinger
        model.refresh(force=True)  # a ping round among the pods now Running
        rendered = model.answer("default", "check_all")
        assert rendered[0] == 200, rendered[:2]
        original = model.answer
        setattr(model, "answer", lambda ns, path: rendered if path.strip("/") == "check_all" else original(ns, path))  # noqa: B010
        log(f"  /check_all: {len(rendered[2]) / 2**20:.0f} MB; judging in a fresh interpreter ...")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
        out = subprocess.run([sys.executable, "-m", "bench.mesh_verdict", "--judge", twin.kube_url, "--runs",
                              str(runs)], input=twin.token, capture_output=True, text=True, env=env, cwd=ROOT,
                             check=True)
        result: dict[str, Any] = json.loads(out.stdout)
        result["answer_mb"] = len(rendered[2]) / 2**20
        return result


def lines(pods: int, result: dict[str, Any]) -> tuple[list[str], bool]:
    seconds = statistics.median(result["seconds"])
    time_ok, rss_ok = seconds <= TIME_GOAL_S, result["rss_mb"] <= RSS_GOAL_MB
    detail = (f"({result['status']}; median of {len(result['seconds'])}; CPU "
              f"{statistics.median(result['cpu_seconds']):.2f} s; of which /check_all ({result['answer_mb']:.0f} MB) "
              f"streamed and judged {statistics.median(result['stream_seconds']):.2f} s; XCom "
              f"{result['xcom_bytes'] / 1024:.0f} KB; load average {os.getloadavg()[0]:.1f})")
    return [
        f"mesh verdict time at {pods} pods: {seconds:.2f} s {detail}  goal: <= {TIME_GOAL_S:g} s  "
        f"{'PASS' if time_ok else 'MISS'}",
        f"mesh verdict peak memory at {pods} pods: {result['rss_mb']:.0f} MB peak RSS of the judging process "
        f"({result['rss_before_mb']:.0f} MB before the check)  goal: <= {RSS_GOAL_MB:g} MB  "
        f"{'PASS' if rss_ok else 'MISS'}",
    ], time_ok and rss_ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--pods", default="200,1000", help="goldpinger pod counts, comma-separated")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--judge", metavar="URL", help=argparse.SUPPRESS)  # the fresh interpreter's side
    args = ap.parse_args(argv)
    if args.judge:
        print(json.dumps(judge(args.judge, sys.stdin.read().strip(), args.runs)))
        return 0
    ok = True
    for pods in (int(p) for p in args.pods.split(",")):
        out, passed = lines(pods, measure(pods, args.runs, log=lambda s: print(s, file=sys.stderr)))
        print("\n".join(out), flush=True)
        ok = ok and passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
