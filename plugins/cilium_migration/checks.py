"""Cluster checks: fetch what a rule needs and apply the rule from ``readiness``/``mesh``.

Each check takes ``Clients`` and keyword arguments (JSON-serialisable, so a trigger can carry them) and
returns a ``Verdict``: ``done`` (the wait is over), ``waiting`` (not yet), or ``failed`` (a terminal
state: waiting longer cannot help). Sensors, triggers, rollback and preflight share them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cilium_migration import aws_node, goldpinger, mesh, nodegroups, nodes, old_cni, restarts, workloads
from cilium_migration.clients import Clients, items, read_or_none
from cilium_migration.readiness import (
    AGENT_NOT_READY_TAINT,
    AWS_CNI,
    CILIUM,
    CILIUM_PART_OF,
    NODEGROUP_FAILED_STATES,
    cilium_node_ready,
    controller_of,
    daemonset_rolled_out,
    deployment_rolled_out,
    has_taint,
    is_daemonset_pod,
    name_of,
    node_cni,
    node_nodegroup,
    node_ready,
    node_summary,
    nodegroup_at_size,
    pod_node,
    pod_ready,
    runs_current_template,
)

DONE, WAITING, FAILED = "done", "waiting", "failed"
TERMINAL_STATES = frozenset({DONE, FAILED})


@dataclass
class Verdict:
    status: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "data": self.data}


Check = Callable[..., Verdict]
CHECKS: dict[str, Check] = {}


def check(fn: Check) -> Check:
    CHECKS[fn.__name__] = fn
    return fn


def run(name: str, clients: Clients, **kwargs: Any) -> Verdict:
    """Run the named check (how triggers call it, by name)."""
    return CHECKS[name](clients, **kwargs)


@check
def nodegroups_at_size(clients: Clients, *, cluster: str, sizes: dict[str, int]) -> Verdict:
    """Each node group is ACTIVE with ``desiredSize`` as given; a failed state is terminal."""
    waiting = []
    for nodegroup, size in sorted(sizes.items()):
        ng = nodegroups.describe(clients.eks, cluster, nodegroup)
        state = ng.get("status")
        desired = (ng.get("scalingConfig") or {}).get("desiredSize")
        if state in NODEGROUP_FAILED_STATES:
            return Verdict(FAILED, f"Terminal state reached. Node group {nodegroup}: {state}, "
                                   "Expected state: ACTIVE")
        if not nodegroup_at_size(ng, size):
            waiting.append(f"{nodegroup}: {state}, desired size {desired} (want {size})")
    if waiting:
        return Verdict(WAITING, "; ".join(waiting))
    return Verdict(DONE, "ACTIVE at size: " + ", ".join(f"{g}={n}" for g, n in sorted(sizes.items())))


@check
def nodes_registered(clients: Clients, *, nodegroups: list[str], count: int) -> Verdict:
    """Exactly ``count`` nodes carry the node-group label (0 means: its nodes are gone)."""
    found = nodes.nodegroup_nodes(clients.core, nodegroups)
    names = [name_of(n) for n in found]
    what = f"{len(names)} node(s) in {', '.join(nodegroups)} (want {count})"
    return Verdict(DONE if len(names) == count else WAITING, what, {"nodes": names})


@check
def nodes_ready(clients: Clients, *, nodegroups: list[str], count: int, cilium: bool = True,
                blocking: list[str] | None = None) -> Verdict:
    """``count`` nodes Ready (Cilium nodes: also without the agent-not-ready taint)."""
    found = nodes.nodegroup_nodes(clients.core, nodegroups)
    rule = cilium_node_ready if cilium else node_ready
    not_ready = [node_summary(n) for n in found if not rule(n)]
    if len(found) == count and not not_ready:
        return Verdict(DONE, f"{count} node(s) of {', '.join(nodegroups)} Ready"
                       + (" with the agent-not-ready taint gone" if cilium else ""))
    return Verdict(WAITING, f"{len(found) - len(not_ready)}/{count} Ready; waiting for: "
                   + ("; ".join(not_ready) or f"{count - len(found)} more node(s)"), {"not_ready": not_ready})


@check
def nodes_replaced(clients: Clients, *, nodegroups: list[str], count: int, gone: list[str]) -> Verdict:
    """The ``gone`` nodes (instances terminated) have left, and ``count`` nodes of the groups are Ready."""
    found = nodes.nodegroup_nodes(clients.core, nodegroups)
    still = sorted(set(gone) & {name_of(n) for n in found})
    if still:
        return Verdict(WAITING, f"terminated node(s) still registered: {', '.join(still)}")
    return nodes_ready(clients, nodegroups=nodegroups, count=count, cilium=True)


@check
def all_nodes_ready(clients: Clients) -> Verdict:
    found = nodes.list_nodes(clients.core)
    bad = [node_summary(n) for n in found if not node_ready(n) or has_taint(n, AGENT_NOT_READY_TAINT)]
    if found and not bad:
        return Verdict(DONE, f"all {len(found)} nodes Ready")
    return Verdict(WAITING, "not Ready: " + ("; ".join(bad) or "no nodes"))


@check
def aws_node_rolled_out(clients: Clients) -> Verdict:
    ds = aws_node.read(clients.apps)
    if ds is None:
        return Verdict(FAILED, "Terminal state reached: DaemonSet kube-system/aws-node does not exist")
    st = ds.get("status") or {}
    what = (f"aws-node observedGeneration {st.get('observedGeneration')}/{ds['metadata'].get('generation')}, "
            f"updated {st.get('updatedNumberScheduled')}, available {st.get('numberAvailable')}, "
            f"desired {st.get('desiredNumberScheduled')}")
    return Verdict(DONE if daemonset_rolled_out(ds) else WAITING, what)


@check
def aws_node_absent(clients: Clients, *, nodegroups: list[str]) -> Verdict:
    """No aws-node pod on the new nodes, and aws-node fenced; one there is a terminal failure."""
    ds = aws_node.read(clients.apps)
    if ds is None:
        return Verdict(DONE, "aws-node does not exist")
    new = {name_of(n) for n in nodes.nodegroup_nodes(clients.core, nodegroups)}
    offending = sorted(f"{name_of(p)} on {pod_node(p)}" for p in aws_node.pods(clients.core, ds)
                       if pod_node(p) in new)
    if offending:
        return Verdict(FAILED, "Terminal state reached: aws-node runs on new nodes: " + ", ".join(offending))
    if not aws_node.is_fenced(ds):
        return Verdict(FAILED, "Terminal state reached: aws-node is not fenced (no cni In [aws-cni] affinity)")
    return Verdict(DONE, f"aws-node absent on {len(new)} new node(s)", {"nodes": sorted(new)})


CILIUM_SELECTOR = "=".join(CILIUM_PART_OF)  # every Cilium workload and pod carries it


def _unscheduled(pod: dict[str, Any]) -> str | None:
    """The scheduler's message for a pod it could not place, else None."""
    cond = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"),
                None)
    if pod_node(pod) or (pod.get("status") or {}).get("phase") != "Pending":
        return None
    return str((cond or {}).get("message") or "not scheduled yet")


@check
def cilium_rolled_out(clients: Clients, *, namespace: str, nodegroups: list[str]) -> Verdict:
    """Every Cilium DaemonSet (agent, envoy) rolled out with a Ready pod on every node of these groups,
    every Cilium Deployment (operator, relay) rolled out, no Cilium pod Pending; a Cilium pod on an
    aws-cni node is terminal (the fence did not hold)."""
    daemonsets = items(clients.apps.list_namespaced_daemon_set, namespace, label_selector=CILIUM_SELECTOR)
    deployments = items(clients.apps.list_namespaced_deployment, namespace, label_selector=CILIUM_SELECTOR)
    pods = items(clients.core.list_namespaced_pod, namespace, label_selector=CILIUM_SELECTOR)
    all_nodes = nodes.list_nodes(clients.core)
    by_name = {name_of(n): n for n in all_nodes}
    targets = [name_of(n) for n in all_nodes if node_nodegroup(n) in set(nodegroups)]
    fenced = sorted(f"{name_of(p)} on {pod_node(p)}" for p in pods
                    if pod_node(p) and node_cni(by_name.get(pod_node(p) or "")) == AWS_CNI)
    if fenced:
        return Verdict(FAILED, "Terminal state reached: Cilium pods on aws-cni nodes: " + ", ".join(fenced))
    waiting = [f"{name_of(p)} Pending: {message}" for p in pods if (message := _unscheduled(p))]
    for ds in daemonsets:
        ready_on = {pod_node(p) for p in pods if pod_ready(p) and (controller_of(p) or {}).get("name") == name_of(ds)}
        missing = [n for n in targets if n not in ready_on]
        if not daemonset_rolled_out(ds) or missing:
            waiting.append(f"DaemonSet {name_of(ds)} not rolled out" + (f" (no Ready pod on {', '.join(missing)})"
                                                                        if missing else ""))
    waiting += [f"Deployment {name_of(d)} not rolled out" for d in deployments if not deployment_rolled_out(d)]
    if not daemonsets:
        waiting.append(f"no Cilium DaemonSet in {namespace} yet")
    if waiting:
        return Verdict(WAITING, "; ".join(waiting[:10]), {"waiting": waiting})
    return Verdict(DONE, f"Cilium rolled out: DaemonSets {', '.join(sorted(map(name_of, daemonsets)))} on all "
                         f"{len(targets)} node(s) of {', '.join(nodegroups)}; Deployments "
                         f"{', '.join(sorted(map(name_of, deployments)))}; no Cilium pod Pending")


CILIUM_AGENT = "cilium"  # the agent DaemonSet, and its pods' k8s-app label
CILIUM_CONFIG = "cilium-config"
CNI_UNINSTALL_KEY = "cni-uninstall"


@check
def cilium_cni_uninstall_armed(clients: Clients, *, namespace: str, nodegroups: list[str]) -> Verdict:
    """Before ``helm uninstall``: every Cilium agent on a node that stays (one outside ``nodegroups``, the
    groups the rollback removes) runs the agent DaemonSet's current template with ``cni-uninstall: "true"``
    in ``cilium-config``, so its preStop hook removes Cilium's CNI configuration from the node when it
    stops. No agent on a node that stays: nothing to wait for. Such agents while ``cilium-config`` lacks the
    key: terminal (nothing will add it)."""
    leaving = {name_of(n) for n in nodes.nodegroup_nodes(clients.core, nodegroups)}
    agents = [p for p in items(clients.core.list_namespaced_pod, namespace, label_selector=f"k8s-app={CILIUM_AGENT}")
              if pod_node(p) and pod_node(p) not in leaving]
    if not agents:
        return Verdict(DONE, f"no Cilium agent on a node that stays (the nodes of {', '.join(nodegroups)} go "
                             "away with their CNI configuration)")
    on = ", ".join(sorted({str(pod_node(p)) for p in agents}))
    config = read_or_none(clients.core.read_namespaced_config_map, CILIUM_CONFIG, namespace) or {}
    if (config.get("data") or {}).get(CNI_UNINSTALL_KEY) != "true":
        return Verdict(FAILED, f"Terminal state reached: Cilium agents run on {on}, which stay, and {namespace}/"
                               f"{CILIUM_CONFIG} has no {CNI_UNINSTALL_KEY}: \"true\" (the Helm release is not "
                               "deployed, so it could not be set): uninstalling now would leave 05-cilium.conflist "
                               "on those nodes and break pod networking there. Set cni.uninstall=true on the "
                               "release (or the key in the ConfigMap), restart DaemonSet cilium, then clear this task")
    ds = read_or_none(clients.apps.read_namespaced_daemon_set, CILIUM_AGENT, namespace)
    stale = sorted(f"{name_of(p)} on {pod_node(p)}" for p in agents if ds is None or not runs_current_template(p, ds))
    if stale:
        return Verdict(WAITING, f"Cilium agents not yet restarted with {CNI_UNINSTALL_KEY}: " + ", ".join(stale[:10]),
                       {"waiting": stale})
    return Verdict(DONE, f"Cilium agents on {on} run with {CNI_UNINSTALL_KEY}: \"true\": they remove Cilium's CNI "
                         "configuration when they stop")


@check
def goldpinger_on_nodes(clients: Clients, *, namespace: str, nodegroups: list[str]) -> Verdict:
    """A Running, Ready goldpinger DaemonSet pod on every node of these groups."""
    targets = [name_of(n) for n in nodes.nodegroup_nodes(clients.core, nodegroups)]
    ready_on = {pod_node(p) for p in goldpinger.pods(clients.core, namespace) if is_daemonset_pod(p) and pod_ready(p)}
    missing = [n for n in targets if n not in ready_on]
    if targets and not missing:
        return Verdict(DONE, f"goldpinger Ready on all {len(targets)} node(s) of {', '.join(nodegroups)}")
    return Verdict(WAITING, "goldpinger not Ready on: " + (", ".join(missing) or "no nodes yet"))


@check
def goldpinger_on_cilium(clients: Clients, *, namespace: str, per_pod: bool = False) -> Verdict:
    """The goldpinger Deployment rolled out with every pod on a Cilium node (``per_pod``, in place: every
    pod wired by Cilium, i.e. with its CiliumEndpoint)."""
    dep = read_or_none(clients.apps.read_namespaced_deployment, goldpinger.NAME, namespace)
    if dep is None:
        return Verdict(FAILED, f"Terminal state reached: Deployment {namespace}/goldpinger does not exist")
    pods = [p for p in goldpinger.pods(clients.core, namespace) if not is_daemonset_pod(p)
            and not (p.get("metadata") or {}).get("deletionTimestamp")]
    if per_pod:
        on_cilium = cilium_pod_names(clients, namespace, pods)
        wrong = sorted(f"{name_of(p)} on {pod_node(p)}" for p in pods if name_of(p) not in on_cilium)
    else:
        by_name = {name_of(n): n for n in nodes.list_nodes(clients.core)}
        wrong = sorted(f"{name_of(p)} on {pod_node(p)}" for p in pods
                       if node_cni(by_name.get(pod_node(p) or "")) != CILIUM)
    if deployment_rolled_out(dep) and not wrong:
        return Verdict(DONE, f"goldpinger Deployment rolled out, {len(pods)} pod(s) on Cilium nodes")
    return Verdict(WAITING, "goldpinger Deployment: " + ("not rolled out yet" if not deployment_rolled_out(dep)
                                                          else "pods on the AWS VPC CNI: " + ", ".join(wrong)))


def cilium_pod_names(clients: Clients, namespace: str, pods: list[dict[str, Any]]) -> set[str]:
    """Of ``pods`` (in ``namespace``), those Cilium wired: with their own CiliumEndpoint (one list)."""
    endpoints = {name_of(e): e for e in old_cni.list_endpoints(clients.custom)
                 if old_cni.namespace_of(e) == namespace}
    return {name_of(p) for p in pods if name_of(p) in endpoints and old_cni.is_pods_endpoint(p, endpoints[name_of(p)])}


@check
def pods_on_cni(clients: Clients, *, cni: str) -> Verdict:
    """In place: every pod that needs a CNI is on ``cni`` (``cilium``: none without its CiliumEndpoint,
    before the old CNI goes; ``aws-cni``: none with one, after a rollback). The pods left are named, with
    what would restart them (a bare pod needs a human)."""
    pods = items(clients.core.list_pod_for_all_namespaces)
    endpoints = old_cni.list_endpoints(clients.custom)
    left = old_cni.old_cni_pods(pods, endpoints) if cni == CILIUM else old_cni.cilium_pods(pods, endpoints)
    if not left:
        return Verdict(DONE, f"every pod that needs a CNI is on {cni}")
    where = "the AWS VPC CNI" if cni == CILIUM else "Cilium"
    text = old_cni.summary(left).replace("on the old CNI", f"still on {where}", 1)
    bare = [f"{old_cni.namespace_of(p)}/{name_of(p)}" for p in left if old_cni.owner_kind(p) == "bare"]
    if bare:
        text += f"; bare pods (no controller restarts them: delete and recreate them yourself): {', '.join(bare[:10])}"
    return Verdict(WAITING, text, {"pods": [f"{old_cni.namespace_of(p)}/{name_of(p)}" for p in left][:100]})


@check
def workload_rolled_out(clients: Clients, *, kind: str, namespace: str, workload: str) -> Verdict:
    """A restarted workload's rollout is done (what ``kubectl rollout status`` checks); gone is done."""
    obj = restarts.read(clients.apps, restarts.Workload(kind, namespace, workload))
    if obj is None:
        return Verdict(DONE, f"{kind} {namespace}/{workload} is gone")
    done, message = restarts.rollout_done(obj, kind)
    return Verdict(DONE if done else WAITING, f"{kind} {namespace}/{workload}: {message}")


@check
def workloads_drained(clients: Clients, *, nodegroups: list[str]) -> Verdict:
    """No workload pods (DaemonSet and mirror pods excepted) left on these groups' nodes."""
    names = [name_of(n) for n in nodes.nodegroup_nodes(clients.core, nodegroups)]
    left = workloads.workloads_on_nodes(clients.core, names)
    listed = [f"{(p.get('metadata') or {}).get('namespace')}/{name_of(p)}" for p in left]
    if not left:
        return Verdict(DONE, f"no workload pods on {len(names)} node(s) of {', '.join(nodegroups)}")
    return Verdict(WAITING, f"{len(left)} workload pod(s) left: " + ", ".join(listed[:20]), {"pods": listed})


@check
def mesh_healthy(clients: Clients, *, namespace: str, tolerance_s: float = 30.0,
                 started_at: str | None = None, aws_nodegroups: list[str] | None = None,
                 per_pod_cni: bool = False) -> Verdict:
    """goldpinger's full mesh: every instance answered, N x N fresh OK pings; verdict per CNI pair. Judged
    only once every goldpinger pod runs its workload's current template (after a restart, the pods from
    before it do not count). ``per_pod_cni`` (in place): a pod's CNI is its own (a CiliumEndpoint or not),
    not its node's."""
    start = datetime.fromisoformat(started_at) if started_at else datetime.now(UTC)
    pods = goldpinger.pods(clients.core, namespace)
    if stale := goldpinger.from_before_restart(clients.apps, namespace, pods):
        return Verdict(WAITING, f"{len(stale)} goldpinger pod(s) from before the restart still running: "
                                + ", ".join(stale[:10]), {"healthy": False, "stale": stale})
    all_nodes = nodes.list_nodes(clients.core)
    on_cilium = cilium_pod_names(clients, namespace, pods) if per_pod_cni else None
    try:
        answers = goldpinger.check_all_responses(clients.core, namespace)
    except Exception as exc:  # the proxy answers 503 while no endpoint is ready
        return Verdict(WAITING, f"goldpinger /check_all not answering: {exc}".splitlines()[0])
    try:  # streamed and judged one instance at a time: the answer holds N x N results
        verdict = mesh.evaluate_responses(answers, pods, all_nodes, started_at=start, tolerance_s=tolerance_s,
                                          aws_nodegroups=aws_nodegroups or (), cilium_pods=on_cilium)
    except goldpinger.CheckAllError as exc:
        return Verdict(WAITING, str(exc).splitlines()[0])
    message = verdict.summary()
    if not verdict.healthy:
        message += " | failing pairs: " + (", ".join(verdict.failing_pairs()) or "none") + " | " + "; ".join(
            verdict.problems[:5])
    return Verdict(DONE if verdict.healthy else WAITING, message, verdict.to_dict())
