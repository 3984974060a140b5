"""Benchmark: a full migration's wall time against the twin's critical path, and worker slots held waiting.

Runs ``localrun.demo`` (the twin of the default scenario, a local Airflow, the DAG approved at both
gates) at a timing profile, and once the run has ended, before anything stops, reads the figures:

- **Run wall time**: the DAG run's ``start_date`` to ``end_date`` (Airflow's REST API), less the time
  its approval gates waited for an answer (each ``hitlDetails`` ``created_at`` to ``responded_at``): that
  is the human's time, not the orchestration's (the demo answers at the earliest 6 s after the wait
  began; see ``localrun.rest.MIN_APPROVAL_AGE_S``). The raw wall time is printed too.
- **The twin's critical path**: the union over time of the delays the twin imposed during the run
  (``GET /_twin/critical-path``, defined in ``twin.delays``: node boot, agent start, node Ready, taint
  removal, pod starts, node drains), less the part that fell inside approval waits. No orchestrator could
  finish faster; wall time outside it is orchestration overhead.
- **Ratio** = wall time / critical path (goal <= 1.10 at the realistic profile), printed with the
  critical path's segments (offset from the run's start, length, the delays in it).
- **Worker-slot seconds held while waiting** (goal 0): a task holds a worker slot from each ``running``
  event in Airflow's event log (``GET /eventLogs``: one per start in a worker, a resume from deferral
  included) to its next state event (``deferred``, ``success``, ``up_for_retry``, ...). A sensor's
  segment that ends by deferring waits in the triggerer, not in the slot: 0. Any other sensor segment
  waits in its slot from its first log line to its last (a sensor in ``poke`` mode: its unsatisfied
  checks and the sleeps between them; a deferrable sensor that found its state at once, or resumed to
  finish, logs once: 0). Printed beside it, for context and without a goal: the seconds that operators
  (not sensors) held slots, their work included (in-operator polls such as the workload move's are in
  there: Airflow's records cannot tell them apart from work).
- **Overhead**, to find its causes: the wall time outside the critical path, split into time when no task
  instance had started and was not yet finished (scheduling between tasks), and each task's time outside
  the critical path (the largest printed).

Goals are printed on each line; nothing here asserts. Usage (the realistic profile takes several minutes:
nodes boot in 75 s, as on EKS):

    .venv/bin/python -m bench.run_ratio --profile fast|realistic|both
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RATIO_GOAL = 1.10
SLOT_GOAL_S = 0.0
# The DAG's waits sized for the fast profile (the e2e tests' values): its default 10 s poll interval is
# meant for real clusters, where every wait takes minutes.
FAST_CONF = {"timeouts": {"nodegroup": 60, "nodes_ready": 60, "rollout": 60, "mesh": 45, "eviction": 60,
                          "poll_interval": 1, "ping_tolerance": 10}}
STATE_EVENTS = frozenset({"success", "failed", "deferred", "up_for_retry", "up_for_reschedule", "skipped",
                          "upstream_failed", "removed", "restarting", "awaiting_input", "queued", "scheduled"})


@dataclass
class Figures:
    """What one profile's run measured."""

    profile: str
    run_id: str = ""
    state: str = ""
    wall_s: float = 0.0
    approval_s: float = 0.0
    critical_s: float = 0.0
    critical_in_approvals_s: float = 0.0
    segments: list[dict[str, Any]] = field(default_factory=list)
    slot_waiting_s: float = 0.0
    slot_waiting_by_task: dict[str, float] = field(default_factory=dict)
    operator_slot_s: float = 0.0
    between_tasks_s: float = 0.0
    outside_by_task: dict[str, float] = field(default_factory=dict)
    poll_interval: str = ""
    error: str = ""

    @property
    def machine_wall_s(self) -> float:
        return self.wall_s - self.approval_s

    @property
    def machine_critical_s(self) -> float:
        return self.critical_s - self.critical_in_approvals_s


def epoch(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None


def overlap(a: tuple[float, float], windows: list[tuple[float, float]]) -> float:
    """Seconds of ``a`` inside the (disjoint) ``windows``."""
    return sum(max(0.0, min(a[1], w[1]) - max(a[0], w[0])) for w in windows)


def merge(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(windows):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def pages(rest: Any, path: str, key: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        data = rest.request("GET", path, params={**params, "limit": 100, "offset": len(items)})
        batch = data.get(key) or []
        items.extend(batch)
        if not batch or len(items) >= int(data.get("total_entries") or 0):
            return items


def log_times(rest: Any, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> list[float]:
    """The timestamps of the lines one try's operator logged itself (logger ``airflow.task.operators.*``;
    not the task runner's start-up and teardown lines), in order."""
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
    data = rest.request("GET", path, params={"map_index": map_index, "full_content": True},
                        headers={"Accept": "application/json"})
    content = data.get("content") or []
    stamps = []
    for line in content if isinstance(content, list) else []:
        if (isinstance(line, dict) and line.get("timestamp")
                and str(line.get("logger") or "").startswith("airflow.task.operators")):
            value = epoch(str(line["timestamp"]))
            if value is not None:
                stamps.append(value)
    return sorted(stamps)


def slot_figures(rest: Any, dag_id: str, run_id: str) -> tuple[float, dict[str, float], float]:
    """(sensor slot seconds spent waiting, the same by task, operator slot seconds): see the docstring."""
    tis = pages(rest, f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", "task_instances", {})
    is_sensor = {ti["task_id"]: str(ti.get("operator") or ti.get("operator_name") or "").endswith("Sensor")
                 for ti in tis}
    events = pages(rest, "/eventLogs", "event_logs", {"dag_id": dag_id, "run_id": run_id, "order_by": "when"})
    by_try: dict[tuple[str, int, int], list[tuple[float, str]]] = {}
    for e in events:
        when = epoch(e.get("when"))
        if e.get("task_id") and when is not None and (e.get("event") == "running" or e.get("event") in STATE_EVENTS):
            map_index = e.get("map_index")
            key = (str(e["task_id"]), -1 if map_index is None else int(map_index), int(e.get("try_number") or 0))
            by_try.setdefault(key, []).append((when, str(e["event"])))
    waiting: dict[str, float] = {}
    operators = 0.0
    for (task_id, map_index, try_number), seq in by_try.items():
        seq.sort()
        segments = [(t, nxt[0], nxt[1]) for (t, ev), nxt in zip(seq, seq[1:], strict=False) if ev == "running"]
        if not is_sensor.get(task_id):
            operators += sum(end - start for start, end, _ in segments)
            continue
        open_segments = [(s, e) for s, e, ended in segments if ended != "deferred"]
        if not open_segments:
            continue
        stamps = log_times(rest, dag_id, run_id, task_id, map_index, try_number)
        for start, end in open_segments:
            inside = [t for t in stamps if start <= t <= end]  # the event log's times bracket the worker's
            if len(inside) >= 2:
                waiting[task_id] = waiting.get(task_id, 0.0) + (inside[-1] - inside[0])
    return sum(waiting.values()), {k: v for k, v in waiting.items() if v > 0}, operators


def measure(finished: Any, figures: Figures) -> None:
    """Read the figures from the finished run (``localrun.demo.FinishedRun``) while all still runs."""
    rest, twin, dag_id, run_id = finished.rest, finished.twin, finished.dag_id, finished.run_id
    figures.run_id, figures.state = run_id, finished.state
    run = rest.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
    start, end = epoch(run.get("start_date")), epoch(run.get("end_date"))
    if start is None or end is None:
        figures.error = f"the run has no start or end date: {run.get('start_date')}, {run.get('end_date')}"
        return
    figures.wall_s = end - start
    approvals: list[tuple[float, float]] = []
    for detail in (rest.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/hitlDetails") or {}).get("hitl_details", []):
        asked, answered = epoch(detail.get("created_at")), epoch(detail.get("responded_at"))
        if asked is not None and answered is not None:
            approvals.append((max(asked, start), min(answered, end)))
    approvals = merge([w for w in approvals if w[1] > w[0]])
    figures.approval_s = sum(b - a for a, b in approvals)
    path = twin.critical_path(since=start, until=end)
    figures.critical_s = path.total_s
    figures.critical_in_approvals_s = sum(overlap((s.start, s.end), approvals) for s in path.segments)
    figures.segments = [{"at": s.start - start, "s": s.duration_s, "what": s.summary()} for s in path.segments]
    figures.slot_waiting_s, figures.slot_waiting_by_task, figures.operator_slot_s = slot_figures(rest, dag_id, run_id)
    overhead(rest, dag_id, run_id, figures, window=(start, end), excluded=merge(
        approvals + [(s.start, s.end) for s in path.segments]))


def overhead(rest: Any, dag_id: str, run_id: str, figures: Figures, *, window: tuple[float, float],
             excluded: list[tuple[float, float]]) -> None:
    """Where the wall time outside the critical path (and the approvals) went: time when no task instance
    was between its start and end (scheduling), and each task's time outside the critical path."""
    spans: list[tuple[float, float]] = []
    for ti in pages(rest, f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", "task_instances", {}):
        begin, finish = epoch(ti.get("start_date")), epoch(ti.get("end_date"))
        if begin is None or finish is None or finish <= begin:
            continue
        spans.append((begin, finish))
        outside = (finish - begin) - overlap((begin, finish), excluded)
        if outside > 0:
            figures.outside_by_task[str(ti["task_id"])] = outside
    busy = merge(spans + excluded)
    figures.between_tasks_s = (window[1] - window[0]) - overlap(window, busy)


def run_profile(profile: str, poll_interval: float | None) -> Figures:
    from localrun import demo

    figures = Figures(profile)
    run_dir = ROOT / "run" / f"bench-{profile}"
    shutil.rmtree(run_dir / "airflow", ignore_errors=True)  # a fresh Airflow home: one run in its records
    run_dir.mkdir(parents=True, exist_ok=True)
    conf: dict[str, Any] = json.loads(json.dumps(FAST_CONF)) if profile == "fast" else {}
    if poll_interval is not None:
        conf.setdefault("timeouts", {})["poll_interval"] = poll_interval
    figures.poll_interval = str(conf.get("timeouts", {}).get("poll_interval", "the DAG's default"))
    argv = ["--timing", profile, "--run-dir", str(run_dir), "--conf", json.dumps(conf)]

    def on_end(finished: Any) -> None:
        try:
            measure(finished, figures)
        except Exception as exc:  # noqa: BLE001 - reported on the figure lines
            figures.error = f"measuring failed: {exc!r}"

    log = run_dir / "demo.log"
    with log.open("w") as out, contextlib.redirect_stdout(out):
        try:
            code = demo.main(argv, on_end=on_end)
        except Exception as exc:  # noqa: BLE001 - reported on the figure lines
            code, figures.error = 1, f"the run could not be made: {exc!r}"
    if code != 0 and not figures.error:
        figures.error = f"the demo ended with {code} (run state {figures.state or 'unknown'}); see {log}"
    return figures


def print_figures(f: Figures) -> None:
    p = f.profile
    if f.error and not f.wall_s:
        print(f"run/critical-path ratio [{p}]: not measured: {f.error}")
        print(f"worker-slot seconds held while waiting [{p}]: not measured (goal {SLOT_GOAL_S:g})")
        return
    ratio = f.machine_wall_s / f.machine_critical_s if f.machine_critical_s > 0 else float("inf")
    goal = f"goal <= {RATIO_GOAL:.2f}" if p == "realistic" else "no goal at this profile"
    verdict = ("  PASS" if ratio <= RATIO_GOAL else "  MISS") if p == "realistic" else ""
    print(f"run wall time [{p}]: {f.machine_wall_s:.1f} s without the {f.approval_s:.1f} s the approval gates "
          f"waited for an answer ({f.wall_s:.1f} s in all; run {f.run_id}, {f.state}, poll interval "
          f"{f.poll_interval})")
    print(f"twin critical path [{p}]: {f.machine_critical_s:.1f} s in {len(f.segments)} segments"
          + (f" (less {f.critical_in_approvals_s:.1f} s inside approval waits)" if f.critical_in_approvals_s else ""))
    for seg in f.segments:
        print(f"    +{seg['at']:7.1f} s  {seg['s']:6.1f} s  {seg['what']}")
    print(f"run/critical-path ratio [{p}]: {ratio:.2f} ({goal}; {f.machine_wall_s:.1f} s / {f.machine_critical_s:.1f} s){verdict}")
    by_task = ", ".join(f"{t} {s:.1f} s" for t, s in sorted(f.slot_waiting_by_task.items()))
    slot_verdict = "PASS" if f.slot_waiting_s <= SLOT_GOAL_S else "MISS"
    print(f"worker-slot seconds held while waiting [{p}]: {f.slot_waiting_s:.1f} (goal {SLOT_GOAL_S:g})"
          + (f": {by_task}" if by_task else "") + f"  {slot_verdict}")
    print(f"worker-slot seconds of operators, their work included [{p}]: {f.operator_slot_s:.1f} (no goal)")
    top = sorted(f.outside_by_task.items(), key=lambda item: -item[1])[:8]
    print(f"overhead [{p}]: {f.machine_wall_s - f.machine_critical_s:.1f} s outside the critical path: "
          f"{f.between_tasks_s:.1f} s with no task started (scheduling); the tasks with most time outside it: "
          + ", ".join(f"{t} {v:.1f} s" for t, v in top))
    if f.error:
        print(f"note [{p}]: {f.error}")


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs, {model}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run_ratio", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=["fast", "realistic", "both"], default="both")
    ap.add_argument("--poll-interval", type=float, help="the DAG's timeouts.poll_interval (default: the "
                    "e2e tests' 1 s at the fast profile, the DAG's own default at the realistic one)")
    args = ap.parse_args(argv)
    print(f"machine: {machine()}", flush=True)
    for profile in (["fast", "realistic"] if args.profile == "both" else [args.profile]):
        print_figures(run_profile(profile, args.poll_interval))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
