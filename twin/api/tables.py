"""Server-side printing: the meta.k8s.io/v1 Table kubectl asks for, with the columns it shows.

Columns with ``priority: 1`` are shown only with ``-o wide``. Cells follow kubectl's rendering
(``<none>`` for empty values, ages like ``5m``, node status ``Ready,SchedulingDisabled``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from twin.resources import ResourceType

Obj = dict[str, Any]
Column = tuple[str, str, int, Callable[[Obj], Any]]  # name, type, priority, cell function

NONE = "<none>"


def wants_table(accept: str) -> bool:
    """Whether the Accept header asks for a meta.k8s.io/v1 Table."""
    for part in accept.split(","):
        params = {p.strip() for p in part.split(";")[1:]}
        if "as=Table" in params and "v=v1" in params:
            return True
    return False


def human_age(timestamp: str | None, now: datetime | None = None) -> str:
    """Kubernetes' HumanDuration of the time since ``timestamp`` (RFC 3339)."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y{days % 365}d" if days < 365 * 8 else f"{days // 365}y"


def _get(obj: Any, *path: str, default: Any = None) -> Any:
    for p in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(p)
    return default if obj is None else obj


def _name(o: Obj) -> str:
    return str(_get(o, "metadata", "name", default=""))


def _age(o: Obj) -> str:
    return human_age(_get(o, "metadata", "creationTimestamp"))


def _labels_string(labels: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or NONE


def _selector_string(selector: dict[str, Any] | None) -> str:
    if not selector:
        return NONE
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        op = e.get("operator")
        if op in ("In", "NotIn"):
            parts.append(f"{e['key']} {op.lower()} ({','.join(e.get('values') or [])})")
        else:
            parts.append(e["key"] if op == "Exists" else f"!{e['key']}")
    return ",".join(parts) or NONE


def _containers(o: Obj) -> list[Obj]:
    return list(_get(o, "spec", "template", "spec", "containers", default=[]))


# ---- nodes -----------------------------------------------------------------------------------------

def _node_status(o: Obj) -> str:
    ready = next((c for c in _get(o, "status", "conditions", default=[]) if c.get("type") == "Ready"), None)
    status = "Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")
    if ready is not None and ready.get("status") == "Unknown":
        status = "NotReady"
    if _get(o, "spec", "unschedulable"):
        status += ",SchedulingDisabled"
    return status


def _node_roles(o: Obj) -> str:
    roles = []
    for key, value in (_get(o, "metadata", "labels", default={}) or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            roles.append(key.split("/", 1)[1])
        elif key == "kubernetes.io/role":
            roles.append(value)
    return ",".join(sorted(r for r in roles if r)) or NONE


def _node_address(kind: str) -> Callable[[Obj], str]:
    def cell(o: Obj) -> str:
        for a in _get(o, "status", "addresses", default=[]):
            if a.get("type") == kind:
                return str(a.get("address"))
        return NONE
    return cell


def _node_info(key: str) -> Callable[[Obj], str]:
    return lambda o: str(_get(o, "status", "nodeInfo", key, default="<unknown>"))


# ---- pods ------------------------------------------------------------------------------------------

def _pod_ready(o: Obj) -> str:
    statuses = _get(o, "status", "containerStatuses", default=[])
    ready = sum(1 for s in statuses if s.get("ready"))
    return f"{ready}/{len(_get(o, 'spec', 'containers', default=[]))}"


def _pod_status(o: Obj) -> str:
    reason = _get(o, "status", "reason") or _get(o, "status", "phase", default="Unknown")
    for s in _get(o, "status", "initContainerStatuses", default=[]):
        waiting = _get(s, "state", "waiting", "reason")
        if waiting and waiting != "PodInitializing":
            return f"Init:{waiting}"
    for s in _get(o, "status", "containerStatuses", default=[]):
        waiting = _get(s, "state", "waiting", "reason")
        terminated = _get(s, "state", "terminated", "reason")
        if waiting:
            reason = waiting
        elif terminated and reason == "Running":
            reason = terminated
    if _get(o, "metadata", "deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod_restarts(o: Obj) -> int:
    return sum(int(s.get("restartCount") or 0) for s in _get(o, "status", "containerStatuses", default=[]))


def _pod_readiness_gates(o: Obj) -> str:
    gates = _get(o, "spec", "readinessGates", default=[])
    if not gates:
        return NONE
    conditions = {c.get("type"): c.get("status") for c in _get(o, "status", "conditions", default=[])}
    met = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
    return f"{met}/{len(gates)}"


def _field(*path: str, default: Any = NONE) -> Callable[[Obj], Any]:
    return lambda o: _get(o, *path, default=default)


def _images(o: Obj) -> str:
    return ",".join(str(c.get("image", "")) for c in _containers(o))


def _container_names(o: Obj) -> str:
    return ",".join(str(c.get("name", "")) for c in _containers(o))


def _service_ports(o: Obj) -> str:
    ports = []
    for p in _get(o, "spec", "ports", default=[]):
        s = f"{p.get('port')}"
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        ports.append(f"{s}/{p.get('protocol', 'TCP')}")
    return ",".join(ports) or NONE


def _ready_replicas(o: Obj) -> str:
    """``READY`` of Deployments and StatefulSets: ready replicas / spec.replicas."""
    return f"{_get(o, 'status', 'readyReplicas', default=0)}/{_get(o, 'spec', 'replicas', default=1)}"


def _int_or_percent(*path: str) -> Callable[[Obj], str]:
    return lambda o: "N/A" if _get(o, *path) is None else str(_get(o, *path))


COLUMNS: dict[str, list[Column]] = {
    "nodes": [
        ("Name", "string", 0, _name),
        ("Status", "string", 0, _node_status),
        ("Roles", "string", 0, _node_roles),
        ("Age", "string", 0, _age),
        ("Version", "string", 0, _node_info("kubeletVersion")),
        ("Internal-IP", "string", 1, _node_address("InternalIP")),
        ("External-IP", "string", 1, _node_address("ExternalIP")),
        ("OS-Image", "string", 1, _node_info("osImage")),
        ("Kernel-Version", "string", 1, _node_info("kernelVersion")),
        ("Container-Runtime", "string", 1, _node_info("containerRuntimeVersion")),
    ],
    "pods": [
        ("Name", "string", 0, _name),
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        ("Restarts", "string", 0, _pod_restarts),
        ("Age", "string", 0, _age),
        ("IP", "string", 1, _field("status", "podIP")),
        ("Node", "string", 1, _field("spec", "nodeName")),
        ("Nominated Node", "string", 1, _field("status", "nominatedNodeName")),
        ("Readiness Gates", "string", 1, _pod_readiness_gates),
    ],
    "daemonsets.apps": [
        ("Name", "string", 0, _name),
        ("Desired", "integer", 0, _field("status", "desiredNumberScheduled", default=0)),
        ("Current", "integer", 0, _field("status", "currentNumberScheduled", default=0)),
        ("Ready", "integer", 0, _field("status", "numberReady", default=0)),
        ("Up-to-date", "integer", 0, _field("status", "updatedNumberScheduled", default=0)),
        ("Available", "integer", 0, _field("status", "numberAvailable", default=0)),
        ("Node Selector", "string", 0,
         lambda o: _labels_string(_get(o, "spec", "template", "spec", "nodeSelector"))),
        ("Age", "string", 0, _age),
        ("Containers", "string", 1, _container_names),
        ("Images", "string", 1, _images),
        ("Selector", "string", 1, lambda o: _selector_string(_get(o, "spec", "selector"))),
    ],
    "deployments.apps": [
        ("Name", "string", 0, _name),
        ("Ready", "string", 0, _ready_replicas),
        ("Up-to-date", "integer", 0, _field("status", "updatedReplicas", default=0)),
        ("Available", "integer", 0, _field("status", "availableReplicas", default=0)),
        ("Age", "string", 0, _age),
        ("Containers", "string", 1, _container_names),
        ("Images", "string", 1, _images),
        ("Selector", "string", 1, lambda o: _selector_string(_get(o, "spec", "selector"))),
    ],
    "statefulsets.apps": [
        ("Name", "string", 0, _name),
        ("Ready", "string", 0, _ready_replicas),
        ("Age", "string", 0, _age),
        ("Containers", "string", 1, _container_names),
        ("Images", "string", 1, _images),
    ],
    "replicasets.apps": [
        ("Name", "string", 0, _name),
        ("Desired", "integer", 0, _field("spec", "replicas", default=1)),
        ("Current", "integer", 0, _field("status", "replicas", default=0)),
        ("Ready", "integer", 0, _field("status", "readyReplicas", default=0)),
        ("Age", "string", 0, _age),
    ],
    "namespaces": [
        ("Name", "string", 0, _name),
        ("Status", "string", 0, _field("status", "phase", default="Active")),
        ("Age", "string", 0, _age),
    ],
    "services": [
        ("Name", "string", 0, _name),
        ("Type", "string", 0, _field("spec", "type", default="ClusterIP")),
        ("Cluster-IP", "string", 0, _field("spec", "clusterIP")),
        ("External-IP", "string", 0, lambda o: NONE),
        ("Port(s)", "string", 0, _service_ports),
        ("Age", "string", 0, _age),
        ("Selector", "string", 1, lambda o: _labels_string(_get(o, "spec", "selector"))),
    ],
    "configmaps": [
        ("Name", "string", 0, _name),
        ("Data", "integer", 0, lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
        ("Age", "string", 0, _age),
    ],
    "poddisruptionbudgets.policy": [
        ("Name", "string", 0, _name),
        ("Min Available", "string", 0, _int_or_percent("spec", "minAvailable")),
        ("Max Unavailable", "string", 0, _int_or_percent("spec", "maxUnavailable")),
        ("Allowed Disruptions", "integer", 0, _field("status", "disruptionsAllowed", default=0)),
        ("Age", "string", 0, _age),
    ],
}
DEFAULT_COLUMNS: list[Column] = [("Name", "string", 0, _name), ("Age", "string", 0, _age)]


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(rt: ResourceType, objects: list[Obj], *, include_object: str = "Metadata",
          list_meta: Obj | None = None, with_columns: bool = True) -> Obj:
    """A meta.k8s.io/v1 Table of ``objects``; ``include_object`` is Object, Metadata or None."""
    columns = COLUMNS.get(rt.key, DEFAULT_COLUMNS)
    definitions = [{"name": name, "type": kind, "format": "name" if name == "Name" else "",
                    "description": "", "priority": priority} for name, kind, priority, _ in columns]
    rows = []
    for obj in objects:
        row: Obj = {"cells": [cell(obj) for _, _, _, cell in columns]}
        row_object = _row_object(obj, include_object)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    out: Obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta or {}, "rows": rows}
    if with_columns:
        out["columnDefinitions"] = definitions
    return out
