"""Evictions against the twin: a PodDisruptionBudget's 429 is retried until the timeout and never forced
by default; with ``force`` the pod is deleted; DaemonSet pods are never touched; dry run moves nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import kubernetes
import pytest

from cilium_migration import nodes, workloads
from cilium_migration.errors import TemporaryError
from cilium_migration.readiness import name_of
from twin.cluster import Twin
from twin.config import FAST
from twin.scenario import load_scenario


@pytest.fixture
def twin() -> Iterator[Twin]:
    t = Twin(load_scenario("default"), timing=FAST)
    t.start()
    try:
        yield t
    finally:
        t.stop()


@pytest.fixture
def core(twin: Twin) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(twin.kube_client())


def web_pods(core: kubernetes.client.CoreV1Api) -> list[str]:
    return sorted(p.metadata.name for p in core.list_namespaced_pod("default", label_selector="app=web").items
                  if not p.metadata.deletion_timestamp)


def test_a_blocked_budget_is_retried_then_refused_and_never_forced(twin: Twin, core: kubernetes.client.CoreV1Api
                                                                   ) -> None:
    twin.faults.update({"blocked_pdbs": ["default/web"]})
    pod = next(p for p in workloads.workloads_on_nodes(core, [name_of(n) for n in nodes.list_nodes(core)])
               if name_of(p).startswith("web-"))
    before = web_pods(core)
    with pytest.raises(TemporaryError, match="PodDisruptionBudget forbids it"):
        workloads.evict(core, pod, deadline=time.monotonic() + 0.5, sleep=lambda s: time.sleep(0.05))
    attempts = [r for r in twin.api.request_log if r.subresource == "eviction" and r.name == name_of(pod)]
    assert len(attempts) >= 2 and all(r.code == 429 for r in attempts)
    assert web_pods(core) == before


def test_force_deletes_a_pod_the_budget_keeps_refusing(twin: Twin, core: kubernetes.client.CoreV1Api) -> None:
    twin.faults.update({"blocked_pdbs": ["default/web"]})
    pod = next(p for p in workloads.workloads_on_nodes(core, [name_of(n) for n in nodes.list_nodes(core)])
               if name_of(p).startswith("web-"))
    change = workloads.evict(core, pod, deadline=time.monotonic() + 0.2, force=True,
                             sleep=lambda s: time.sleep(0.05))
    assert change is not None and change.action == "delete (forced)"
    assert name_of(pod) not in web_pods(core)


def test_dry_run_moves_nothing_and_daemonset_pods_stay(twin: Twin, core: kubernetes.client.CoreV1Api) -> None:
    names = [name_of(n) for n in nodes.list_nodes(core)]
    before = {name_of(p) for p in workloads.pods_on_nodes(core, names)}
    changes = workloads.move(core, names, batch_size=3, batch_timeout=5, dry_run=True)
    assert changes and all(c.dry_run and c.action == "evict" for c in changes)
    moved = {c.name for c in changes}
    assert not any(n.startswith(("aws-node-", "kube-proxy-")) for n in moved)
    assert {name_of(p) for p in workloads.pods_on_nodes(core, names)} == before
