"""Which pods still run on the old CNI (the AWS VPC CNI) while Cilium runs beside it (the in-place strategy).

Rules:
- Cilium's agent creates a ``CiliumEndpoint`` (``cilium.io/v2``, the pod's namespace and name, owned by
  the pod) for every pod its CNI wired. An endpoint is the pod's own when its address, if it has one,
  is one of the pod's IPs, and its Pod owner, if it names one, has the pod's UID (a StatefulSet's pod
  keeps its name across replacements; a stale endpoint must not count for the new pod).
- A pod is on the old CNI when it is Running, or Pending and bound to a node, is not host-network
  (host-network pods use no CNI), and has no endpoint of its own. A pod being deleted still counts
  (aws-node must stay until its network is torn down); so does a pod still being wired on its node (the
  gate waits until it is Cilium's). Finished pods and unscheduled ones do not.
- No CiliumEndpoint resource on the cluster (404: Cilium's CRDs are not installed) means no pod has one.
- Requests: one paginated list of pods and one of endpoints, all namespaces, filtered here, whatever
  the cluster's size. Nothing here reads the twin's own bookkeeping: only what a real cluster has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cilium_migration.clients import items
from cilium_migration.errors import is_not_found
from cilium_migration.readiness import AWS_CNI, CILIUM, controller_of, name_of, pod_node, uid_of, workload_of

Obj = dict[str, Any]

GROUP, VERSION, PLURAL = "cilium.io", "v2", "ciliumendpoints"
SUMMARY_LIMIT = 10


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("namespace", "default"))


def pod_ips(pod: Mapping[str, Any]) -> set[str]:
    """``status.podIP`` and every ``status.podIPs`` entry."""
    status = pod.get("status") or {}
    ips = {str(entry.get("ip")) for entry in status.get("podIPs") or [] if entry.get("ip")}
    if status.get("podIP"):
        ips.add(str(status["podIP"]))
    return ips


def endpoint_ips(cep: Mapping[str, Any]) -> set[str]:
    """The IPv4 and IPv6 addresses of ``status.networking.addressing``."""
    addressing = ((cep.get("status") or {}).get("networking") or {}).get("addressing") or []
    return {str(a[family]) for a in addressing for family in ("ipv4", "ipv6") if a.get(family)}


def endpoint_owner_uid(cep: Mapping[str, Any]) -> str | None:
    for ref in _meta(cep).get("ownerReferences") or []:
        if ref.get("kind") == "Pod" and ref.get("uid"):
            return str(ref["uid"])
    return None


def is_pods_endpoint(pod: Mapping[str, Any], cep: Mapping[str, Any]) -> bool:
    """The endpoint belongs to this pod (see the module's rules: address and owner, when given)."""
    addresses = endpoint_ips(cep)
    if addresses and not addresses & pod_ips(pod):
        return False
    owner = endpoint_owner_uid(cep)
    return owner is None or owner == uid_of(pod)


def needs_a_cni(pod: Mapping[str, Any]) -> bool:
    """Running, or Pending on a node, and not host-network."""
    phase = (pod.get("status") or {}).get("phase")
    if (pod.get("spec") or {}).get("hostNetwork"):
        return False
    return phase == "Running" or (phase == "Pending" and pod_node(pod) is not None)


def _split(pods: Iterable[Mapping[str, Any]], endpoints: Iterable[Mapping[str, Any]]) -> tuple[list[Obj], list[Obj]]:
    """(on the old CNI, on Cilium) of the pods that need a CNI, each by namespace/name."""
    by_key = {(namespace_of(c), name_of(c)): c for c in endpoints}
    old: list[Obj] = []
    wired: list[Obj] = []
    for pod in sorted(pods, key=lambda p: (namespace_of(p), name_of(p))):
        if not needs_a_cni(pod):
            continue
        cep = by_key.get((namespace_of(pod), name_of(pod)))
        (wired if cep is not None and is_pods_endpoint(pod, cep) else old).append(dict(pod))
    return old, wired


def old_cni_pods(pods: Iterable[Mapping[str, Any]], endpoints: Iterable[Mapping[str, Any]]) -> list[Obj]:
    """The pods on the old CNI, given every pod and every CiliumEndpoint (no API calls), by namespace/name."""
    return _split(pods, endpoints)[0]


def cilium_pods(pods: Iterable[Mapping[str, Any]], endpoints: Iterable[Mapping[str, Any]]) -> list[Obj]:
    """The pods that need a CNI and have their own CiliumEndpoint (Cilium wired them), by namespace/name:
    what a rollback moves back to the old CNI."""
    return _split(pods, endpoints)[1]


def pods_to_move(pods: Iterable[Mapping[str, Any]], endpoints: Iterable[Mapping[str, Any]], onto: str) -> list[Obj]:
    """The pods not yet on ``onto`` (``cilium``: those on the old CNI; ``aws-cni``: those on Cilium)."""
    if onto not in (CILIUM, AWS_CNI):
        raise ValueError(f"no such CNI: {onto!r}")
    return old_cni_pods(pods, endpoints) if onto == CILIUM else cilium_pods(pods, endpoints)


def list_endpoints(custom: Any) -> list[Obj]:
    """Every CiliumEndpoint, all namespaces (one paginated list); none when the resource does not exist."""
    try:
        return items(custom.list_cluster_custom_object, GROUP, VERSION, PLURAL)
    except Exception as exc:
        if is_not_found(exc):
            return []
        raise


def pods_on_old_cni(core: Any, custom: Any) -> list[Obj]:
    """The pods on the old CNI now: one list of pods and one of CiliumEndpoints (``CustomObjectsApi``)."""
    pods = items(core.list_pod_for_all_namespaces)
    return old_cni_pods(pods, list_endpoints(custom))


def owner_kind(pod: Mapping[str, Any]) -> str:
    """What restarts the pod: Deployment (through its ReplicaSet), StatefulSet, DaemonSet, Job...; ``bare``
    without a controller."""
    key = workload_of(pod)
    if key is None:
        return "bare" if controller_of(pod) is None else "?"
    return key[1]


def summary(pods: Iterable[Mapping[str, Any]], *, limit: int = SUMMARY_LIMIT) -> str:
    """``N pod(s) on the old CNI: ns/name on node (kind), ...`` with at most ``limit`` named."""
    pods = list(pods)
    if not pods:
        return "no pod on the old CNI"
    named = ", ".join(f"{namespace_of(p)}/{name_of(p)} on {pod_node(p) or '?'} ({owner_kind(p)})"
                      for p in pods[:limit])
    more = f" (+{len(pods) - limit} more)" if len(pods) > limit else ""
    return f"{len(pods)} pod(s) on the old CNI: {named}{more}"
