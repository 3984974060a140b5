"""Who can reach whom: the twin's one rule for pod-to-pod traffic.

A pod reaches another unless either is not Running or has no IP, or ``faults.cross_cni_broken`` is on
and the two were wired by different CNIs (host-network pods are wired by none and reach everyone).
"""

from __future__ import annotations

from twin.controllers.base import pod_cni, pod_running
from twin.faults import Faults
from twin.store import Obj

DEFAULT_PORT = 8080


def pod_port(pod: Obj) -> int:
    """The port a goldpinger-style pod serves on: env PORT, else its first containerPort, else 8080."""
    for c in pod.get("spec", {}).get("containers") or []:
        for env in c.get("env") or []:
            if env.get("name") == "PORT" and str(env.get("value", "")).isdigit():
                return int(env["value"])
        for port in c.get("ports") or []:
            if port.get("containerPort"):
                return int(port["containerPort"])
    return DEFAULT_PORT


def can_reach(src_pod: Obj, dst_pod: Obj, faults: Faults, path: str = "/ping") -> tuple[bool, str]:
    """(reachable, error message as an HTTP client in ``src_pod`` would report it)."""
    dst_ip = (dst_pod.get("status") or {}).get("podIP") or ""
    if not dst_ip:
        return False, "Host or pod IP empty, can't make a call"
    url = f"http://{dst_ip}:{pod_port(dst_pod)}{path}"
    if not pod_running(dst_pod):
        return False, f'Get "{url}": dial tcp {dst_ip}:{pod_port(dst_pod)}: connect: connection refused'
    if not pod_running(src_pod) or not (src_pod.get("status") or {}).get("podIP"):
        return False, f'Get "{url}": dial tcp {dst_ip}:{pod_port(dst_pod)}: connect: network is unreachable'
    src_cni, dst_cni = pod_cni(src_pod), pod_cni(dst_pod)
    if faults.cross_cni_broken and src_cni and dst_cni and src_cni != dst_cni:
        return False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    return True, ""
