"""What the ``audit_report`` task collects for the report: goldpinger's mesh node by node, change rows.

- ``mesh_matrix`` maps each goldpinger pod (by name, or by pod IP as goldpinger keys it) to its node, and
  each node to its CNI; nodes are grouped by CNI; a missing result is ``missing``, a failed ping ``failed``;
- pods not Running (or being deleted) are not part of the matrix;
- ``change_rows`` keeps task order and each record's try.
"""

from __future__ import annotations

from typing import Any

from cilium_migration.report.collect import change_rows, mesh_matrix


def node(name: str, cni: str | None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"cni": cni} if cni else {}}}


def pod(name: str, node_name: str, ip: str, phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"nodeName": node_name}, "status": {"phase": phase, "podIP": ip}}


def result(ok: bool, ip: str) -> dict[str, Any]:
    return {"OK": ok, "PodIP": ip, "PingTime": "2026-12-03T10:00:00Z"}


def test_the_matrix_is_by_node_grouped_by_cni() -> None:
    nodes = [node("new-1", None), node("old-1", "aws-cni"), node("old-2", "aws-cni")]
    pods = [pod("gp-a", "old-1", "10.0.0.1"), pod("gp-b", "old-2", "10.0.0.2"), pod("gp-c", "new-1", "10.0.1.1"),
            pod("gp-d", "new-1", "10.0.1.9", phase="Pending")]
    check_all = {"responses": {
        "gp-a": {"OK": True, "PodIP": "10.0.0.1", "response": {"podResults": {
            "gp-a": result(True, "10.0.0.1"), "gp-b": result(True, "10.0.0.2"), "gp-c": result(False, "10.0.1.1")}}},
        "10.0.1.1": {"OK": True, "PodIP": "10.0.1.1", "response": {"podResults": {
            "10.0.0.1": result(True, "10.0.0.1"), "10.0.1.1": result(True, "10.0.1.1")}}},
    }}
    matrix = mesh_matrix(check_all, pods, nodes)
    assert matrix["nodes"] == [{"name": "old-1", "cni": "aws-cni"}, {"name": "old-2", "cni": "aws-cni"},
                               {"name": "new-1", "cni": "cilium"}]
    assert matrix["results"] == {
        "old-1": {"old-1": "ok", "old-2": "ok", "new-1": "failed"},
        "old-2": {"old-1": "missing", "old-2": "missing", "new-1": "missing"},  # gp-b did not answer
        "new-1": {"old-1": "ok", "old-2": "missing", "new-1": "ok"},
    }


def test_no_goldpinger_no_matrix() -> None:
    assert mesh_matrix({}, [], [node("a", None)]) == {"nodes": [], "results": {}}


def test_change_rows_keep_task_order_and_tries() -> None:
    rows = change_rows({"b.step": [{"action": "patch", "try": 2}], "a.step": [{"action": "create", "try": 1}]})
    assert rows == [{"task": "b.step", "action": "patch", "try": 2}, {"task": "a.step", "action": "create", "try": 1}]
