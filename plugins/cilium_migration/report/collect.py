"""What the report needs that only the cluster knows, read by the ``audit_report`` task.

Rules: best effort (a part that cannot be read is left out with the reason, the report still comes out);
read-only; nothing here holds a Secret value (change records are redacted where they are made).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cilium_migration.readiness import (
    name_of,
    node_cni,
    node_cordoned,
    node_nodegroup,
    node_ready,
    pod_node,
    pod_running,
)

XCOM_KEY = "report"
OK, FAILED, MISSING = "ok", "failed", "missing"


def _reason(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


def change_rows(changes_by_task: Mapping[str, Iterable[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Every change record as one row with its task, in task order then try order."""
    return [{"task": task, **dict(r)} for task, records in changes_by_task.items() for r in records or []]


def cluster_summary(clients: Any, spec: Any) -> dict[str, Any]:
    """Node groups (scaling config), nodes (group, CNI, ready, cordoned) and whether aws-node exists."""
    from cilium_migration import aws_node, nodegroups, nodes

    out: dict[str, Any] = {}
    try:
        out["nodegroups"] = {g: dict(nodegroups.describe(clients.eks, spec.cluster_name, g).get("scalingConfig")
                                     or {}) for g in (*spec.old_nodegroups, spec.new_nodegroup)}
    except Exception as exc:
        out["nodegroups_error"] = _reason(exc)
    try:
        out["nodes"] = [node_row(n) for n in nodes.list_nodes(clients.core)]
    except Exception as exc:
        out["nodes_error"] = _reason(exc)
    try:
        out["aws_node"] = aws_node.read(clients.apps) is not None
    except Exception as exc:
        out["aws_node_error"] = _reason(exc)
    return out


def node_row(node: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": name_of(node), "nodegroup": node_nodegroup(node), "cni": node_cni(node),
            "ready": node_ready(node), "cordoned": node_cordoned(node)}


def mesh_matrix(check_all: Mapping[str, Any], pods: Iterable[Mapping[str, Any]],
                nodes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """goldpinger's ``/check_all`` node by node: ``results[src][dst]`` is ``ok``, ``failed`` or
    ``missing`` (no result), for every node with a Running goldpinger pod; nodes carry their CNI."""
    node_by_name = {name_of(n): n for n in nodes}
    running = [p for p in pods if pod_running(p) and not (p.get("metadata") or {}).get("deletionTimestamp")]
    node_of = {name_of(p): pod_node(p) or "" for p in running}
    by_ip = {(p.get("status") or {}).get("podIP"): name_of(p) for p in running}

    def node_for(key: str, entry: Mapping[str, Any]) -> str | None:
        pod = key if key in node_of else by_ip.get(entry.get("PodIP"))
        return node_of.get(pod) if pod else None

    matrix_nodes = sorted({n for n in node_of.values() if n},
                          key=lambda n: (node_cni(node_by_name.get(n)), n))
    results: dict[str, dict[str, str]] = {src: dict.fromkeys(matrix_nodes, MISSING) for src in matrix_nodes}
    for key, entry in (check_all.get("responses") or {}).items():
        src = node_for(key, entry or {})
        if src not in results:
            continue
        for peer, result in (((entry or {}).get("response") or {}).get("podResults") or {}).items():
            dst = node_for(peer, result or {})
            if dst in results[src]:
                results[src][dst] = OK if (result or {}).get("OK") else FAILED
    return {"nodes": [{"name": n, "cni": node_cni(node_by_name.get(n))} for n in matrix_nodes],
            "results": results}


def read_mesh_matrix(clients: Any, namespace: str) -> dict[str, Any]:
    """The mesh as goldpinger sees it now (``{"error": ...}`` when it cannot be read)."""
    from cilium_migration import goldpinger, nodes

    try:
        return mesh_matrix(goldpinger.check_all(clients.core, namespace), goldpinger.pods(clients.core, namespace),
                           nodes.list_nodes(clients.core))
    except Exception as exc:
        return {"error": _reason(exc), "nodes": [], "results": {}}


def progress_summary(clients: Any, namespace: str) -> dict[str, Any]:
    """The progress record: phase reached, by which run, its history (the snapshot is left out)."""
    from cilium_migration import progress

    try:
        record = progress.read(clients.core, namespace)
    except Exception as exc:
        return {"error": _reason(exc)}
    return {"phase": record.phase, "run_id": record.run_id, "history": record.history}
