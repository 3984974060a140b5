"""Acceptance 4: a dry run goes through the whole DAG and leaves the cluster exactly as it was.

What the twin's controllers write on their own, with no client at all: only the node heartbeat
(``twin/controllers/nodelifecycle.py``: every node's conditions get a new ``lastHeartbeatTime`` at least
every 60 s, which bumps the node's ``resourceVersion``). Pods, workloads, PDBs and node conditions
otherwise change only when something else does, and goldpinger keeps its ping results outside the store.

So the comparison is the strongest honest one: every object in the store's dump, status included, is
byte-for-byte equal before and after, except those two heartbeat fields of nodes; and a store listener
requires every write committed during the run to be such a heartbeat (anything else fails the test with
the object and the fields that changed).

The twin's request log (``RequestRecord``) does not record the ``dryRun`` query, so the test records
every request that is not a read at the API server's entry point (the real server, wrapped), and
requires each to be a server-side dry run (``dryRun=All`` in the query, or in the DeleteOptions of a
delete or an eviction). EKS: every node group as ``describe_nodegroup`` returns it is unchanged (the
DAG only logs a dry-run scaling). The audit report marks every change as a dry run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from localrun.rest import AirflowRest
from tests.e2e.conftest import Connected
from tests.e2e.helpers import (
    CUTOVER_GATE,
    DAG_ID,
    DECOMMISSION_GATE,
    comparable,
    conf_for,
    drive,
    explain,
    node_groups,
    record_commits,
)
from twin.api.messages import Request
from twin.cluster import Twin

pytestmark = pytest.mark.e2e

READS = frozenset({"GET", "HEAD", "OPTIONS"})


def record_writes(twin: Twin) -> list[tuple[str, str, bool]]:
    """(method, path, is dry run) for every non-read request the API server receives from now on."""
    writes: list[tuple[str, str, bool]] = []
    serve: Callable[[Request], Any] = twin.api.serve

    def recording(req: Request) -> Any:
        if req.method not in READS:
            writes.append((req.method, req.path, is_dry_run(req)))
        return serve(req)

    twin.api.serve = recording  # type: ignore[method-assign]
    return writes


def is_dry_run(req: Request) -> bool:
    try:
        body = json.loads(req.body) if req.body.strip() else {}
    except ValueError:
        body = {}
    options = body if isinstance(body, dict) else {}
    in_body = options.get("dryRun") or (options.get("deleteOptions") or {}).get("dryRun") or []
    return req.query.get("dryRun") == ["All"] or list(in_body) == ["All"]


def test_a_dry_run_changes_nothing(cluster: Connected, airflow: AirflowRest) -> None:
    twin = cluster.twin
    before, groups_before = comparable(twin.store.dump()), node_groups(twin)
    writes = record_writes(twin)
    committed = record_commits(twin)

    run = drive(airflow, conf_for(cluster, dry_run=True),
                answers={CUTOVER_GATE: "proceed", DECOMMISSION_GATE: "proceed"})

    why = explain(airflow, run)
    assert run.state == "success", why
    assert [t for t, _ in run.answered] == [CUTOVER_GATE, DECOMMISSION_GATE], why
    assert "Dry run" in run.bodies[CUTOVER_GATE]
    assert run.tasks["decommission.final_mesh_healthy"] == "success", why
    assert {s for t, s in run.tasks.items() if t.startswith("rollback.")} == {"skipped"}, why

    assert [w for w in writes if not w[2]] == [], "writes that were not dry runs reached the API server"
    assert writes, "no dry-run write reached the API server: the run did not exercise its steps"
    assert committed == [], "objects were written during the dry run:\n" + "\n".join(committed)
    assert comparable(twin.store.dump()) == before
    assert node_groups(twin) == groups_before

    report = str(airflow.xcom(DAG_ID, run.run_id, "audit_report"))
    rows = [line for line in report.splitlines() if line.startswith("| ") and " | dry run |" not in line
            and not line.startswith("|---")]
    assert rows and all(row.endswith("| yes |") for row in rows), report
