"""A maintenance window, end to end: a run whose cutover is asked for outside its window.

The window opens every 3 minutes and lasts 2 (``*/3 * * * *``, 2 minutes, in Europe/Paris), so whatever
the machine's load the test can answer "proceed" at the cutover gate while the window is closed, with
the next opening 40 to 60 seconds ahead. The run goes through preflight, the baseline, the fence and
the Cilium phase at once (non-disruptive). Answered "proceed" outside the window, the gate records the
answer (the HITL detail holds it) but defers (state ``deferred``: no worker slot) to a
``DateTimeTrigger`` at the next opening, saying so in its log; nothing is cordoned meanwhile. When the
window opens the gate branches to the cutover, which starts inside the window (the cordon after the
opening); "hold" at the decommission gate then ends the run early (``success``).

A window too short for the next batch: the cluster has one Deployment whose pod turns Ready only
``SLOW_READY_S`` (60) seconds after it starts (its readiness probe's ``initialDelaySeconds``), sorted
first so it is in the move's first batch. That batch's replacement is waited for in the triggerer
(``BatchReplacedTrigger``) and takes a minute, which leaves less than a minute of the 2-minute window:
the move does not start its second batch, says why, and waits for the following window (3 minutes after
the first opened), where the remaining batches run.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cilium_migration.windows import Window
from localrun.approvals import pick
from localrun.rest import AirflowRest, PendingApproval
from tests.e2e.conftest import Connected
from tests.e2e.helpers import (
    CUTOVER_GATE,
    DAG_ID,
    DECOMMISSION_GATE,
    OLD_GROUP,
    apps,
    conf_for,
    explain,
    hitl_details,
    nodes_of,
    stop_run,
    task_log,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]  # a loaded machine: the run itself may take minutes

WINDOW = Window("*/3 * * * *", 2, "Europe/Paris")
MARGIN = timedelta(seconds=40)  # time for the gate to resume and defer before the window opens
FIRST_DISRUPTIVE = "cutover.cordon_old_nodes"
MOVE = "cutover.move_workloads"
SLOW_READY_S = 60  # one batch this long leaves too little of a 2-minute window for the next


def slow_ready_deployment(name: str = "aaa-slow-ready") -> dict[str, Any]:
    """One replica whose pod is Ready only ``SLOW_READY_S`` after it starts; sorts first among the
    workload pods (namespace ``default``), so it is in the move's first batch."""
    labels = {"app": name}
    probe = {"httpGet": {"path": "/", "port": 8080}, "initialDelaySeconds": SLOW_READY_S}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "app", "image": "nginx:1.27", "readinessProbe": probe}]}}}}


def parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None


def test_proceed_outside_the_window_waits_without_a_worker_slot_then_the_cutover_runs_inside(
        cluster: Connected, airflow: AirflowRest) -> None:
    twin = cluster.twin
    seen: dict[str, Any] = {}
    done = threading.Event()
    apps(twin).create_namespaced_deployment("default", slow_ready_deployment())
    run_id = airflow.trigger(DAG_ID, conf_for(cluster, **WINDOW.to_params(),
                                              timeouts={"eviction": 3 * SLOW_READY_S}))

    def decide(approval: PendingApproval) -> str | None:
        if approval.task_id == DECOMMISSION_GATE:
            return pick(approval, wanted="hold").option
        assert approval.task_id == CUTOVER_GATE, approval
        now = datetime.now(UTC)
        if WINDOW.is_open(now) or WINDOW.next_start(now) - now < MARGIN:
            return None  # not yet: answer while the window is closed
        seen.update(body=approval.body, answered_at=now, opens=WINDOW.next_start(now))
        threading.Thread(target=watch, daemon=True).start()
        return pick(approval, wanted="proceed").option

    def watch() -> None:
        """Until the window opens: the gate deferred, the phases before it done, nothing cordoned."""
        while not done.is_set() and datetime.now(UTC) < seen["opens"] - timedelta(seconds=2):
            try:
                states = airflow.task_states(DAG_ID, run_id)
                if states.get(CUTOVER_GATE) == "deferred" and "states" not in seen:
                    seen.update(states=dict(states), cordoned=[n.metadata.name for n in nodes_of(twin, OLD_GROUP)
                                                               if n.spec.unschedulable])
            except Exception as exc:  # Airflow's REST API stays up; note it and look again
                seen.setdefault("errors", []).append(str(exc))
            time.sleep(1.0)

    try:
        state = airflow.follow(DAG_ID, run_id, decide=decide, timeout=720, poll=1.0)
    except BaseException:
        stop_run(airflow, run_id)
        raise
    finally:
        done.set()
    why = explain(airflow, run_id)
    tasks = airflow.task_states(DAG_ID, run_id)
    assert state == "success", why
    assert "Maintenance window" in seen["body"] and "*/3 * * * *" in seen["body"], seen["body"]

    # before the window: everything non-disruptive done, the gate deferred (no worker slot), nothing cordoned
    assert "states" in seen, f"the gate was never seen deferred before {seen['opens']}: {seen}\n{why}"
    before = seen["states"]
    not_done = [t for t, s in before.items() if t.split(".")[0] in ("preflight", "cilium_nodes") and s != "success"]
    assert not_done == [], before
    assert before.get(FIRST_DISRUPTIVE) in (None, "none", "scheduled"), before
    assert seen["cordoned"] == [], seen
    details = hitl_details(airflow, run_id)[CUTOVER_GATE]
    assert details.get("chosen_options") == ["proceed"], details  # the answer was recorded
    responded = parse(details.get("responded_at"))
    assert responded is not None and responded < seen["opens"], details

    # the wait was said, and the cutover started only once the window had opened
    gate = airflow.request("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{CUTOVER_GATE}")
    log = task_log(airflow, run_id, CUTOVER_GATE, int(gate.get("try_number") or 1))
    assert "outside the maintenance window" in log and "waiting for the next window at" in log, log
    cordon = airflow.request("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{FIRST_DISRUPTIVE}")
    started = parse(cordon.get("start_date"))
    assert cordon["state"] == "success" and started is not None and started >= seen["opens"], cordon
    assert tasks[MOVE] == "success", why

    # the first batch (the slow pod's) left too little of the window: the next waited for the following one
    move = airflow.request("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{MOVE}")
    move_log = task_log(airflow, run_id, MOVE, int(move.get("try_number") or 1))
    assert "waiting in the triggerer" in move_log, move_log  # the long batch waited without a slot
    assert "would not finish before the window closes" in move_log, move_log
    moved_at = parse(move.get("end_date"))
    following = WINDOW.next_start(seen["opens"] + timedelta(seconds=1))
    assert moved_at is not None and moved_at >= following, (move, following)
    assert tasks["approve_decommission.hold"] == "success", why
