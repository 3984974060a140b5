"""A mesh gate right after a goldpinger restart judges the restarted pods, not the ones from before.

``kubectl rollout restart`` only patches the Deployment's template: for a while the pods from before the
restart still run, and healthy. The gate waits while any of them runs (naming them) and while the
restarted pods are not yet healthy, and passes once they are. The Deployment controller is held back
while the restart is made (the twin's ``controllers_down`` fault: a lagging controller manager), so the
moment when only pods from before the restart exist is certain (without the rule, the gate passes
there). Once the rollout runs, the gate passes only when the restarted pods are all there and their
mesh is healthy.
"""

from __future__ import annotations

import time

from cilium_migration import checks, goldpinger
from cilium_migration.clients import Clients
from twin.cluster import Twin

NS = "default"
TOKEN = "run-1/fence_old_cni.restart_goldpinger"


def mesh(clients: Clients) -> checks.Verdict:
    return checks.run("mesh_healthy", clients, namespace=NS, tolerance_s=1.0)


def wait_healthy(clients: Clients, timeout: float = 30.0) -> checks.Verdict:
    deadline = time.monotonic() + timeout
    while (verdict := mesh(clients)).status != checks.DONE:
        assert time.monotonic() < deadline, verdict.message
        time.sleep(0.1)
    return verdict


def test_the_gate_after_a_restart_waits_for_the_restarted_pods(twin: Twin, clients: Clients) -> None:
    goldpinger.deploy(clients, NS)
    wait_healthy(clients)
    before = {p["metadata"]["name"] for p in goldpinger.pods(clients.core, NS)}

    twin.faults.update({"controllers_down": ["deployments"]})  # the restart is not acted on yet
    goldpinger.restart(clients.apps, NS, "Deployment", TOKEN)
    right_after = mesh(clients)

    assert right_after.status == checks.WAITING, "the pods from before the restart must not pass the gate"
    assert "5 goldpinger pod(s) from before the restart" in right_after.message
    assert set(right_after.data["stale"]) <= before
    twin.faults.update({"controllers_down": []})
    verdict = wait_healthy(clients)
    replicas = [p for p in goldpinger.pods(clients.core, NS) if p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"]
    assert len(replicas) == 5 and all(p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == TOKEN
                                      for p in replicas), "only restarted Deployment pods were judged"
    assert {p["metadata"]["name"] for p in replicas} <= set(verdict.data["expected"])

def test_a_repeated_restart_with_the_same_token_changes_nothing_and_the_gate_passes(clients: Clients) -> None:
    assert goldpinger.restart(clients.apps, NS, "Deployment", TOKEN) == []
    assert mesh(clients).status == checks.DONE
