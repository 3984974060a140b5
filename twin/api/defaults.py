"""What the real API server does to an object on create: defaulting, status reset, name validation."""

from __future__ import annotations

import re
import zlib
from typing import Any

from twin.resources import (
    DAEMONSETS,
    DEPLOYMENTS,
    PDBS,
    PODS,
    REPLICASETS,
    SERVICES,
    STATEFULSETS,
    ResourceType,
)
from twin.store import ApiError

Obj = dict[str, Any]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_FREE_NAMES = frozenset({"rbac.authorization.k8s.io"})  # RBAC names may hold ':' (system:node)
_STATUS_RESET = (DEPLOYMENTS, DAEMONSETS, REPLICASETS, STATEFULSETS, PDBS, SERVICES)
_WITH_SPEC = (PODS, DEPLOYMENTS, DAEMONSETS, REPLICASETS, STATEFULSETS, SERVICES)


def validate_name(rt: ResourceType, obj: Obj) -> None:
    """422 Invalid for a missing or malformed metadata.name, with the real server's message."""
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name and not meta.get("generateName"):
        raise _invalid(rt, "", "metadata.name", "Required value: name or generateName is required")
    if name and rt.group not in _FREE_NAMES and (len(name) > 253 or not _DNS_SUBDOMAIN.match(name)):
        raise _invalid(rt, name, "metadata.name",
                       f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                       "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                       "character")


def _invalid(rt: ResourceType, name: str, field: str, message: str) -> ApiError:
    return ApiError(422, "Invalid", f'{rt.kind} "{name}" is invalid: {field}: {message}',
                    {"name": name, "group": rt.group, "kind": rt.kind,
                     "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]})


def prepare_for_create(rt: ResourceType, obj: Obj) -> None:
    """Defaults and status reset the real registry applies on create (in place)."""
    obj.setdefault("metadata", {}).pop("resourceVersion", None)
    spec = obj.setdefault("spec", {}) if rt in _WITH_SPEC else None
    if rt is PODS and spec is not None:
        _pod_spec_defaults(spec)
        spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")  # admission
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif rt is DAEMONSETS:  # these four are not omitempty: clients require them
        obj["status"] = {"currentNumberScheduled": 0, "numberMisscheduled": 0,
                         "desiredNumberScheduled": 0, "numberReady": 0}
    elif rt is STATEFULSETS:  # not omitempty either
        obj["status"] = {"replicas": 0, "availableReplicas": 0}
    elif rt in _STATUS_RESET:
        obj["status"] = {}
    if rt is DEPLOYMENTS and spec is not None:
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        _template_defaults(spec)
    elif rt is DAEMONSETS and spec is not None:
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        _template_defaults(spec)
    elif rt is STATEFULSETS and spec is not None:
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain",
                                                                 "whenScaled": "Retain"})
        _template_defaults(spec)
    elif rt is REPLICASETS and spec is not None:
        spec.setdefault("replicas", 1)
        _template_defaults(spec)
    elif rt is SERVICES and spec is not None:
        spec.setdefault("type", "ClusterIP")
        if "clusterIP" not in spec and spec["type"] != "ExternalName":
            spec["clusterIP"] = _cluster_ip(obj)
            spec["clusterIPs"] = [spec["clusterIP"]]
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))


def _template_defaults(spec: Obj) -> None:
    template_spec = (spec.get("template") or {}).get("spec")
    if isinstance(template_spec, dict):
        _pod_spec_defaults(template_spec)


def _pod_spec_defaults(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if isinstance(container, dict):
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            image = str(container.get("image", ""))
            container.setdefault("imagePullPolicy", "Always" if image.endswith(":latest") or ":" not in image
                                 else "IfNotPresent")


def _cluster_ip(obj: Obj) -> str:
    """A stable address in 10.100.0.0/16 derived from the service's namespace and name."""
    meta = obj.get("metadata") or {}
    h = zlib.crc32(f"{meta.get('namespace')}/{meta.get('name')}".encode())
    return f"10.100.{(h >> 8) % 256}.{h % 254 + 1}"
