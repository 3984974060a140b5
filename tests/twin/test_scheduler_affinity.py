"""The scheduler's InterPodAffinity filter: required pod affinity and anti-affinity, as kube-scheduler.

Specification, driven through ``Scheduler.reconcile()`` on a Store:
- cilium-envoy's shape (affinity to ``k8s-app=cilium`` on the same host, anti-affinity to itself) runs
  only where a cilium agent runs, one per node; elsewhere it stays Pending with ``PodScheduled=False``
  (Unschedulable), the real "0/N nodes are available" message and one Warning ``FailedScheduling``
  Event, and it is placed as soon as an agent appears on its node.
- The same failure again is not a new Event: it bumps ``count`` and ``lastTimestamp``, and a pod is not
  attempted again while nothing the filters read has changed.
- Anti-affinity spreads replicas over hosts or zones (``topology.kubernetes.io/zone``: nodes sharing the
  value are one domain); affinity keeps pods in the domain of the pods they follow; a node without the
  topology label never satisfies an affinity term.
- Symmetry: a bound pod's anti-affinity keeps the pods it selects out of its domain.
- The first pod of a group whose affinity selects itself is placed; a pod following pods that do not
  exist is not.
- A term looks in the pod's own namespace unless it names ``namespaces`` or a ``namespaceSelector``.
"""

from __future__ import annotations

from typing import Any

from twin.config import FAST
from twin.controllers.scheduler import Scheduler
from twin.faults import Faults
from twin.resources import EVENTS, NAMESPACES, NODES, PODS
from twin.store import Obj, Store, now_iso

HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


def add_node(store: Store, name: str, zone: str | None = "us-west-1a", **labels: str) -> str:
    node_labels = {HOST: name, **({ZONE: zone} if zone else {}), **labels}
    store.create(NODES, {"metadata": {"name": name, "labels": node_labels},
                         "status": {"allocatable": {"pods": "110"},
                                    "conditions": [{"type": "Ready", "status": "True",
                                                    "lastTransitionTime": now_iso()}]}})
    return name


def add_pod(store: Store, name: str, labels: dict[str, str], *, namespace: str = "default",
            node: str | None = None, affinity: Obj | None = None, pinned_to: str | None = None) -> Obj:
    """A pod (bound to ``node`` and Running when given); ``pinned_to`` adds the node-name affinity a
    DaemonSet pod carries."""
    spec: Obj = {"containers": [{"name": "c", "image": "img:1"}]}
    if affinity:
        spec["affinity"] = dict(affinity)
    if pinned_to:
        spec.setdefault("affinity", {})["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                    "values": [pinned_to]}]}]}}
    pod: Obj = {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec}
    if node:
        spec["nodeName"] = node
        pod["status"] = {"phase": "Running"}
    return store.create(PODS, pod)


def term(topology_key: str, **match_labels: str) -> Obj:
    return {"labelSelector": {"matchLabels": match_labels}, "topologyKey": topology_key}


def affinity(*terms: Obj) -> Obj:
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}}


def anti_affinity(*terms: Obj) -> Obj:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": list(terms)}}


# cilium-envoy's affinity, as the Cilium chart renders it
ENVOY = {**affinity(term(HOST, **{"k8s-app": "cilium"})), **anti_affinity(term(HOST, **{"k8s-app": "cilium-envoy"}))}


def schedule(store: Store, scheduler: Scheduler | None = None) -> Scheduler:
    scheduler = scheduler or Scheduler(store, FAST, Faults())
    scheduler.reconcile()
    return scheduler


def node_of(store: Store, name: str, namespace: str = "default") -> str | None:
    return store.must_get(PODS, namespace, name)["spec"].get("nodeName")


def scheduled_condition(store: Store, name: str, namespace: str = "default") -> Obj:
    pod = store.must_get(PODS, namespace, name)
    return next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")


def events_of(store: Store, name: str, namespace: str = "default") -> list[Obj]:
    return [e for e in store.list(EVENTS, namespace)[0] if e["involvedObject"]["name"] == name]


def message(reasons: str, preemption: str, total: int = 3) -> str:
    return f"0/{total} nodes are available: {reasons}. preemption: 0/{total} nodes are available: {preemption}."


# ---- cilium-envoy --------------------------------------------------------------------------------------

def test_envoy_runs_only_where_the_cilium_agent_runs(store: Store) -> None:
    nodes = [add_node(store, f"n{i}") for i in (1, 2, 3)]
    for n in nodes[:2]:
        add_pod(store, f"cilium-{n}", {"k8s-app": "cilium"}, namespace="kube-system", node=n)
    for n in nodes:
        add_pod(store, f"cilium-envoy-{n}", {"k8s-app": "cilium-envoy"}, namespace="kube-system",
                affinity=ENVOY, pinned_to=n)
    scheduler = schedule(store)
    assert [node_of(store, f"cilium-envoy-{n}", "kube-system") for n in nodes] == ["n1", "n2", None]

    cond = scheduled_condition(store, "cilium-envoy-n3", "kube-system")
    expected = message("1 node(s) didn't match pod affinity rules, 2 node(s) didn't match Pod's node "
                       "affinity/selector", "3 Preemption is not helpful for scheduling")
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", expected)
    [event] = events_of(store, "cilium-envoy-n3", "kube-system")
    assert (event["type"], event["reason"], event["message"], event["count"]) == (
        "Warning", "FailedScheduling", expected, 1)
    assert event["source"] == {"component": "default-scheduler"}
    assert event["involvedObject"] == {
        "kind": "Pod", "apiVersion": "v1", "namespace": "kube-system", "name": "cilium-envoy-n3",
        "uid": store.must_get(PODS, "kube-system", "cilium-envoy-n3")["metadata"]["uid"],
        "resourceVersion": event["involvedObject"]["resourceVersion"]}

    add_pod(store, "cilium-n3", {"k8s-app": "cilium"}, namespace="kube-system", node="n3")
    schedule(store, scheduler)
    assert node_of(store, "cilium-envoy-n3", "kube-system") == "n3"
    assert scheduled_condition(store, "cilium-envoy-n3", "kube-system")["status"] == "True"


def test_unpinned_envoys_go_one_per_agent_node(store: Store) -> None:
    for n in (add_node(store, "n1"), add_node(store, "n2"), add_node(store, "n3")):
        if n != "n3":
            add_pod(store, f"cilium-{n}", {"k8s-app": "cilium"}, namespace="kube-system", node=n)
    for i in range(3):
        add_pod(store, f"envoy-{i}", {"k8s-app": "cilium-envoy"}, namespace="kube-system", affinity=ENVOY)
    schedule(store)
    placed = [node_of(store, f"envoy-{i}", "kube-system") for i in range(3)]
    assert sorted(p for p in placed if p) == ["n1", "n2"]
    waiting = f"envoy-{placed.index(None)}"
    assert scheduled_condition(store, waiting, "kube-system")["message"] == message(
        "1 node(s) didn't match pod affinity rules, 2 node(s) didn't match pod anti-affinity rules",
        "1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod")


def test_a_pending_pod_is_retried_when_the_world_changes_and_its_event_bumped(store: Store) -> None:
    add_node(store, "n1")
    add_pod(store, "envoy", {"k8s-app": "cilium-envoy"}, namespace="kube-system", affinity=ENVOY)
    scheduler = schedule(store)
    [first] = events_of(store, "envoy", "kube-system")
    for _ in range(3):
        schedule(store, scheduler)  # nothing changed: no attempt, no event
    assert events_of(store, "envoy", "kube-system") == [first]

    store.mutate(NODES, None, "n1", lambda n: n["metadata"]["labels"].update(rack="r7"))  # changes nothing
    schedule(store, scheduler)
    [again] = events_of(store, "envoy", "kube-system")
    assert (again["metadata"]["name"], again["message"]) == (first["metadata"]["name"], first["message"])
    assert again["count"] == 2 and again["lastTimestamp"] >= first["lastTimestamp"]

    add_node(store, "n2")  # another failure (0/2 nodes): another Event, as the API server's correlator keys
    schedule(store, scheduler)
    counts = sorted((e["message"][:4], e["count"]) for e in events_of(store, "envoy", "kube-system"))
    assert counts == [("0/1 ", 2), ("0/2 ", 1)]


# ---- anti-affinity and topology ------------------------------------------------------------------------

def test_anti_affinity_spreads_replicas_one_per_host(store: Store) -> None:
    nodes = {add_node(store, f"n{i}") for i in (1, 2, 3)}
    spread = anti_affinity(term(HOST, app="web"))
    for i in range(4):
        add_pod(store, f"web-{i}", {"app": "web"}, affinity=spread)
    schedule(store)
    placed = [node_of(store, f"web-{i}") for i in range(4)]
    assert {p for p in placed if p} == nodes and placed.count(None) == 1
    waiting = f"web-{placed.index(None)}"
    assert scheduled_condition(store, waiting)["message"] == message(
        "3 node(s) didn't match pod anti-affinity rules", "3 No preemption victims found for incoming pod")


def test_nodes_sharing_a_zone_are_one_domain(store: Store) -> None:
    add_node(store, "a1", zone="a")
    add_node(store, "a2", zone="a")
    add_node(store, "b1", zone="b")
    spread = anti_affinity(term(ZONE, app="db"))
    for i in range(3):
        add_pod(store, f"db-{i}", {"app": "db"}, affinity=spread)
    schedule(store)
    zones = sorted(store.must_get(NODES, None, n)["metadata"]["labels"][ZONE]
                   for n in (node_of(store, f"db-{i}") for i in range(3)) if n)
    assert zones == ["a", "b"]


def test_affinity_keeps_pods_in_the_domain_of_the_pods_they_follow(store: Store) -> None:
    add_node(store, "a1", zone="a")
    add_node(store, "b1", zone="b")
    add_node(store, "b2", zone="b")
    add_node(store, "nozone", zone=None)
    add_pod(store, "cache", {"app": "cache"}, node="b1")
    for i in range(4):
        add_pod(store, f"web-{i}", {"app": "web"}, affinity=affinity(term(ZONE, app="cache")))
    schedule(store)
    assert sorted(node_of(store, f"web-{i}") or "" for i in range(4)) == ["b1", "b1", "b2", "b2"]


def test_a_node_without_the_topology_label_never_satisfies_affinity(store: Store) -> None:
    add_node(store, "nozone", zone=None)
    add_pod(store, "cache", {"app": "cache"}, node="nozone")
    add_pod(store, "web", {"app": "web"}, affinity=affinity(term(ZONE, app="cache")))
    schedule(store)
    assert scheduled_condition(store, "web")["message"] == message(
        "1 node(s) didn't match pod affinity rules", "1 Preemption is not helpful for scheduling", total=1)


def test_a_bound_pods_anti_affinity_keeps_the_pods_it_selects_away(store: Store) -> None:
    add_node(store, "n1")
    add_pod(store, "loner", {"app": "loner"}, node="n1", affinity=anti_affinity(term(HOST, app="web")))
    add_pod(store, "web", {"app": "web"})
    add_pod(store, "other", {"app": "other"})
    schedule(store)
    assert node_of(store, "other") == "n1"
    assert node_of(store, "web") is None
    assert scheduled_condition(store, "web")["message"] == message(
        "1 node(s) didn't satisfy existing pods anti-affinity rules",
        "1 No preemption victims found for incoming pod", total=1)
    add_node(store, "n2")
    schedule(store)
    assert node_of(store, "web") == "n2"


# ---- groups and namespaces -----------------------------------------------------------------------------

def test_the_first_pod_of_a_group_that_follows_itself_is_placed_and_the_rest_follow(store: Store) -> None:
    for i in (1, 2, 3):
        add_node(store, f"n{i}")
    together = affinity(term(HOST, app="cache"))
    for i in range(3):
        add_pod(store, f"cache-{i}", {"app": "cache"}, affinity=together)
    add_pod(store, "orphan", {"app": "orphan"}, affinity=affinity(term(HOST, app="nobody")))
    schedule(store)
    assert len({node_of(store, f"cache-{i}") for i in range(3)}) == 1
    assert node_of(store, "orphan") is None
    assert scheduled_condition(store, "orphan")["message"].startswith(
        "0/3 nodes are available: 3 node(s) didn't match pod affinity rules.")


def test_a_term_looks_in_the_pods_own_namespace_unless_told_otherwise(store: Store) -> None:
    store.create(NAMESPACES, {"metadata": {"name": "team-b", "labels": {"team": "b"}}})
    add_node(store, "n1")
    add_pod(store, "db", {"app": "db"}, namespace="team-b", node="n1")
    cases: dict[str, dict[str, Any]] = {
        "own-namespace": {}, "named": {"namespaces": ["team-b"]},
        "selected": {"namespaceSelector": {"matchLabels": {"team": "b"}}}, "every-namespace": {"namespaceSelector": {}},
        "not-selected": {"namespaceSelector": {"matchLabels": {"team": "c"}}}}
    for name, where in cases.items():
        add_pod(store, name, {"app": "x"}, affinity=anti_affinity({**term(HOST, app="db"), **where}))
    schedule(store)
    assert {name: node_of(store, name) for name in cases} == {
        "own-namespace": "n1", "named": None, "selected": None, "every-namespace": None, "not-selected": "n1"}
