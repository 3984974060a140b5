"""Acceptance 4: a dry run goes through the whole DAG and leaves the cluster exactly as it was.

The comparison is the strongest one the twin allows: the store's dump (every object, status included)
is byte-for-byte equal before and after, and the store's cluster-wide ``resourceVersion`` has not moved,
so not one write was committed by anyone during the run. That holds because the twin at rest is silent:
its controllers write only when something changes (no heartbeats, and goldpinger keeps its ping results
outside the store), which the test checks first by watching the idle cluster for a few seconds.

The twin's request log (``RequestRecord``) does not record the ``dryRun`` query, so the test records
every request that is not a read at the API server's entry point (the real server, wrapped), and
requires each to be a server-side dry run (``dryRun=All`` in the query, or in the DeleteOptions of a
delete or an eviction). EKS: every node group as ``describe_nodegroup`` returns it is unchanged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from localrun.rest import AirflowRest
from tests.e2e.conftest import Connected
from tests.e2e.helpers import CUTOVER_GATE, DAG_ID, DECOMMISSION_GATE, conf_for, differences, drive, explain, node_groups
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
    rv_at_rest = twin.store.resource_version
    time.sleep(2)
    assert twin.store.resource_version == rv_at_rest, "the idle twin writes: the comparison below is void"
    before, rv_before, groups_before = json.dumps(twin.store.dump(), sort_keys=True), rv_at_rest, node_groups(twin)
    writes = record_writes(twin)
    committed: list[str] = []
    twin.store.add_listener(lambda event, rt, obj, old: committed.append(
        f"{event} {rt.key} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']} "
        f"rv {obj['metadata'].get('resourceVersion')}: {differences(old or {}, obj)[:6]}"))

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
    assert committed == [], "objects were written during the dry run"
    assert twin.store.resource_version == rv_before
    assert json.dumps(twin.store.dump(), sort_keys=True) == before
    assert node_groups(twin) == groups_before

    report = str(airflow.xcom(DAG_ID, run.run_id, "audit_report"))
    rows = [line for line in report.splitlines() if line.startswith("| ") and " | dry run |" not in line
            and not line.startswith("|---")]
    assert rows and all(row.endswith("| yes |") for row in rows), report
