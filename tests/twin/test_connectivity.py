"""``can_reach``: the twin's single rule for pod-to-pod traffic.

Covers: same-CNI and host-network traffic always flows; with ``cross_cni_broken`` exactly the pairs
wired by different CNIs fail (with a client timeout), without it they flow; a peer with no IP or not
Running fails the way goldpinger's HTTP client reports it.
"""

from __future__ import annotations

import pytest

from twin.connectivity import can_reach
from twin.faults import Faults
from twin.store import Obj


def pod(cni: str | None, *, ip: str | None = "10.1.4.2", phase: str = "Running", port: int | None = None) -> Obj:
    annotations = {"twin.cilium-migration.io/cni": cni} if cni else {}
    container: Obj = {"name": "goldpinger", "image": "goldpinger:3"}
    if port:
        container["env"] = [{"name": "PORT", "value": str(port)}]
    status: Obj = {"phase": phase}
    if ip:
        status["podIP"] = ip
    return {"metadata": {"name": "p", "namespace": "default", "annotations": annotations},
            "spec": {"containers": [container], "hostNetwork": cni is None}, "status": status}


@pytest.mark.parametrize(("src", "dst", "broken", "ok"), [
    pytest.param("aws-cni", "aws-cni", True, True, id="same-aws-cni-under-fault"),
    pytest.param("cilium", "cilium", True, True, id="same-cilium-under-fault"),
    pytest.param("aws-cni", "cilium", False, True, id="cross-cni-healthy"),
    pytest.param("aws-cni", "cilium", True, False, id="aws-to-cilium-under-fault"),
    pytest.param("cilium", "aws-cni", True, False, id="cilium-to-aws-under-fault"),
    pytest.param(None, "cilium", True, True, id="host-network-source"),
    pytest.param("aws-cni", None, True, True, id="host-network-target"),
])
def test_cross_cni_rule(src: str | None, dst: str | None, broken: bool, ok: bool) -> None:
    reached, error = can_reach(pod(src), pod(dst, ip="10.1.6.3"), Faults(cross_cni_broken=broken))
    assert reached is ok
    if ok:
        assert error == ""
    else:
        assert error == ('Get "http://10.1.6.3:8080/ping": context deadline exceeded '
                         "(Client.Timeout exceeded while awaiting headers)")


@pytest.mark.parametrize(("dst", "message"), [
    pytest.param(pod("cilium", ip=None, phase="Pending"), "Host or pod IP empty, can't make a call", id="no-ip"),
    pytest.param(pod("cilium", ip="10.1.6.3", phase="Failed", port=9090),
                 'Get "http://10.1.6.3:9090/ping": dial tcp 10.1.6.3:9090: connect: connection refused',
                 id="not-running"),
])
def test_peers_that_cannot_answer(dst: Obj, message: str) -> None:
    assert can_reach(pod("cilium"), dst, Faults()) == (False, message)


def test_a_source_without_network_reaches_nothing() -> None:
    reached, error = can_reach(pod("aws-cni", ip=None, phase="Pending"), pod("aws-cni"), Faults())
    assert not reached and "network is unreachable" in error
