"""The progress record and the change ledger, written in the twin through the DAG's own clients.

- ``progress.advance`` creates ``cilium-migration-progress`` with the DAG's ``managed-by`` label, moves
  it forward only, and records each move as a change; the snapshot is kept beside it.
- ``ledger.record`` keeps each try's changes under ``<task>.try-<n>`` of the run's own ConfigMap; a
  later try adds its key without losing the earlier ones, and ``read`` gives them back in task order.
- A dry run writes nothing at all.
"""

from __future__ import annotations

from cilium_migration import ledger, progress
from cilium_migration.clients import Clients
from twin.cluster import Twin
from twin.resources import BY_KEY

NS = "kube-system"


def stored(twin: Twin, name: str) -> dict | None:
    return twin.store.get(BY_KEY["configmaps"], NS, name)


def test_the_record_is_created_then_only_moves_forward(twin: Twin, clients: Clients) -> None:
    first = progress.advance(clients.core, NS, progress.read(clients.core, NS), "preflight", "run-1")
    assert [(c.action, c.after) for c in first] == [("record", {"phase": "preflight", "run_id": "run-1"})]
    cm = stored(twin, progress.NAME)
    assert cm is not None and cm["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "cilium-migration"}
    assert progress.keep_snapshot(clients.core, NS, {"nodegroups": {"ng-1": {"desiredSize": 3}}})
    rv = twin.store.resource_version
    assert progress.keep_snapshot(clients.core, NS, {"nodegroups": {"ng-1": {"desiredSize": 3}}}) == []
    assert twin.store.resource_version == rv, "a retried snapshot writes nothing"
    progress.advance(clients.core, NS, progress.read(clients.core, NS), "cutover", "run-1")
    rv = twin.store.resource_version
    assert progress.advance(clients.core, NS, progress.read(clients.core, NS), "baseline", "run-1") == []
    assert twin.store.resource_version == rv, "a step behind the record writes nothing"
    record = progress.read(clients.core, NS)
    assert (record.phase, record.run_id) == ("cutover", "run-1")
    assert record.snapshot == {"nodegroups": {"ng-1": {"desiredSize": 3}}}
    assert [h["phase"] for h in record.history] == ["preflight", "cutover"]


def test_a_dry_run_writes_nothing(twin: Twin, clients: Clients) -> None:
    rv, seen = twin.store.resource_version, len(twin.api.request_log)
    changes = progress.advance(clients.core, NS, progress.read(clients.core, NS), "decommission", "run-1",
                               dry_run=True)
    ledger.record(clients.core, NS, "run-dry", "cutover.cordon_old_nodes", 1, [{"action": "cordon"}], dry_run=True)
    assert changes and all(c.dry_run for c in changes)
    assert twin.store.resource_version == rv
    assert [r for r in twin.api.request_log[seen:] if r.verb not in ("get", "list", "watch")] == []


def test_every_try_is_kept_in_the_runs_ledger(twin: Twin, clients: Clients) -> None:
    run = "manual__2026-12-03T12:00:00+00:00"
    ledger.record(clients.core, NS, run, "cutover.cordon_old_nodes", 1, [{"action": "cordon", "name": "n1"}])
    ledger.record(clients.core, NS, run, "fence_old_cni.fence_aws_node", 1, [{"action": "patch"}])
    ledger.record(clients.core, NS, run, "cutover.cordon_old_nodes", 2, [{"action": "cordon", "name": "n2"}])
    ledger.record(clients.core, NS, run, "cutover.cordon_old_nodes", 3, [])  # a try that changed nothing
    cm = stored(twin, ledger.name_for(run))
    assert cm is not None and cm["metadata"]["annotations"] == {ledger.RUN_ANNOTATION: run}
    order = ["fence_old_cni.fence_aws_node", "cutover.cordon_old_nodes"]
    kept = ledger.read(clients.core, NS, run, order)
    assert list(kept) == order
    assert kept["cutover.cordon_old_nodes"] == {1: [{"action": "cordon", "name": "n1"}],
                                                2: [{"action": "cordon", "name": "n2"}]}
    assert [r["try"] for r in ledger.with_tries(kept)["cutover.cordon_old_nodes"]] == [1, 2]
    assert ledger.read(clients.core, NS, "another-run", order) == {}
