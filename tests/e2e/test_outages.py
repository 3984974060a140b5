"""Faults cost time, never the migration: two 60-second outages of the whole Kubernetes API.

One real run, approved at both gates, against a twin whose Kubernetes API answers every request under
``/api`` and ``/apis`` with 503 for 60 seconds twice: from the moment the run is triggered (preflight
runs in it), and again from the moment ``cutover.move_workloads`` is seen running. The twin's
controllers keep the cluster going meanwhile (only the API is down, as when a control plane is being
replaced). The clients retry with backoff, the sensors' triggers wait it out, and:

- the run ends ``success`` with every rollback step skipped (no rollback);
- both outages happened while the run was going (the second one during the move);
- no pod was lost: every workload pod runs Ready on a Cilium node, every Deployment is
  at full strength, and no PodDisruptionBudget was violated at any moment.
"""

from __future__ import annotations

import threading
import time

import pytest

from localrun.rest import AirflowRest
from tests.e2e.conftest import Connected
from tests.e2e.helpers import (
    CUTOVER_GATE,
    DAG_ID,
    DECOMMISSION_GATE,
    NEW_GROUP,
    conf_for,
    deployments_at_full_strength,
    drive,
    explain,
    nodes_of,
    pod_ready,
    workload_pods,
)

pytestmark = pytest.mark.e2e

OUTAGE = {"path": "^/api", "status": 503, "seconds": 60}
MOVE = "cutover.move_workloads"


def test_two_api_outages_cost_time_not_the_migration(cluster: Connected, airflow: AirflowRest) -> None:
    twin = cluster.twin
    outages: list[str] = []
    done = threading.Event()

    def outage_during_the_move(run_id: str) -> None:
        while not done.is_set():
            try:
                if airflow.task_states(DAG_ID, run_id).get(MOVE) == "running":
                    twin.faults.update({"api": [dict(OUTAGE)]})
                    outages.append(MOVE)
                    return
            except Exception:  # the REST API is Airflow's, never down; a transient error is retried
                pass
            time.sleep(0.3)

    def after_trigger(run_id: str) -> None:
        twin.faults.update({"api": [dict(OUTAGE)]})  # preflight starts within seconds of the trigger
        outages.append("preflight")
        threading.Thread(target=outage_during_the_move, args=(run_id,), daemon=True).start()

    try:
        run = drive(airflow, conf_for(cluster), after_trigger=after_trigger, timeout=600,
                    answers={CUTOVER_GATE: "proceed", DECOMMISSION_GATE: "proceed"})
    finally:
        done.set()
    why = explain(airflow, run)
    assert outages == ["preflight", MOVE], f"outages injected: {outages}\n{why}"
    assert run.state == "success", why
    rollback = {t: s for t, s in run.tasks.items() if t.startswith("rollback.")}
    assert set(rollback.values()) == {"skipped"}, f"no rollback: {rollback}\n{why}"
    on_cilium = {n.metadata.name for n in nodes_of(twin, NEW_GROUP)}
    lost = [p.metadata.name for p in workload_pods(twin) if p.spec.node_name not in on_cilium or not pod_ready(p)]
    assert lost == [], "every workload pod Ready on a Cilium node"
    assert deployments_at_full_strength(twin) == []
    assert twin.disruption is not None and twin.disruption.violations == []
