"""What the end-to-end tests share: driving a run over REST, explaining a failed run, reading the twin.

Rules:
- A run is driven only through Airflow's public REST API (``AirflowRest.follow``); each approval is
  answered with ``localrun.approvals.pick(wanted=...)`` from a per-gate script. An approval the script
  does not name fails the test (the DAG asked a question the test did not expect).
- Cluster state is read from the twin: through the official client over HTTP, boto3 against the EKS
  API, or the twin's store (the cluster's etcd) where a test compares whole states.
- Every assertion about a run carries ``explain(...)``: task states and the failed tries' logs.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from kubernetes import client as k8s

from cilium_migration.nodes import CORDONED_BY
from localrun.approvals import pick
from localrun.rest import AirflowRest, PendingApproval
from twin.cluster import Twin
from twin.resources import DAEMONSETS, NODES, PODS, ResourceType
from twin.store import Obj

DAG_ID = "eks_cilium_migration"
IN_PLACE_DAG_ID = "eks_cilium_migration_in_place"
OLD_GROUP, NEW_GROUP = "ng-1", "ng-cilium"
NODEGROUP_LABEL = "eks.amazonaws.com/nodegroup"
CNI_LABEL = "cni"
CNI_ANNOTATION = "twin.cilium-migration.io/cni"
GOLDPINGER_LABEL = "app.kubernetes.io/name"
CUTOVER_GATE, DECOMMISSION_GATE = "approve_cutover.approve", "approve_decommission.approve"

# Waits sized for the twin at Timing().scaled(0.15): every one finishes in seconds when things work.
FAST_TIMEOUTS = {"nodegroup": 60, "nodes_ready": 60, "rollout": 60, "mesh": 45, "eviction": 60,
                 "poll_interval": 1, "ping_tolerance": 10}
RUN_TIMEOUT_S = 270.0


@dataclass
class Run:
    """A finished DAG run: its final state, every task's state, and the approvals answered."""

    run_id: str
    state: str
    tasks: dict[str, str | None]
    answered: list[tuple[str, str]] = field(default_factory=list)  # (task_id, option)
    bodies: dict[str, str] = field(default_factory=dict)  # task_id -> evidence shown
    dag_id: str = DAG_ID


def conf_for(cluster: Any, **overrides: Any) -> dict[str, Any]:
    """The DAG conf that points a run at this test's twin, with short waits."""
    twin: Twin = cluster.twin
    conf: dict[str, Any] = {
        "cluster_name": twin.cluster_name, "region": twin.region,
        "aws_conn_id": cluster.aws_conn_id, "kubernetes_conn_id": cluster.kubernetes_conn_id,
        "timeouts": dict(FAST_TIMEOUTS),
    }
    timeouts = overrides.pop("timeouts", {})
    conf["timeouts"].update(timeouts)
    conf.update(overrides)
    return conf


def drive(rest: AirflowRest, conf: Mapping[str, Any], *, answers: Mapping[str, str],
          after_trigger: Callable[[str], None] | None = None, timeout: float = RUN_TIMEOUT_S,
          unanswered: Iterable[str] = (), dag_id: str = DAG_ID) -> Run:
    """Trigger a run, answer its approvals from ``answers`` (gate task id -> wanted option prefix), wait
    for the end. Gates in ``unanswered`` are left waiting (their response timeout decides). A run still
    going when this raises is marked failed (the DAG allows one active run)."""
    run_id = rest.trigger(dag_id, dict(conf))
    answered: list[tuple[str, str]] = []
    bodies: dict[str, str] = {}
    left = frozenset(unanswered)

    def decide(approval: PendingApproval) -> str | None:
        if approval.task_id in left:
            return None
        wanted = answers.get(approval.task_id)
        if wanted is None:
            raise AssertionError(f"unexpected approval {approval.task_id!r}: {approval.subject}\n"
                                 + explain(rest, run_id, dag_id=dag_id))
        option = pick(approval, wanted=wanted).option
        answered.append((approval.task_id, option))
        bodies[approval.task_id] = approval.body
        return option

    try:
        if after_trigger is not None:
            after_trigger(run_id)
        state = rest.follow(dag_id, run_id, decide=decide, timeout=timeout, poll=1.0)
    except BaseException:
        stop_run(rest, run_id, dag_id=dag_id)
        raise
    return Run(run_id, state, rest.task_states(dag_id, run_id), answered, bodies, dag_id)


def stop_run(rest: AirflowRest, run_id: str, *, dag_id: str = DAG_ID) -> None:
    """Mark a run failed if it has not ended (best effort: used while cleaning up)."""
    try:
        if rest.run_state(dag_id, run_id) not in ("success", "failed"):
            rest.request("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})
    except requests.RequestException:
        pass


def stop_active_runs(rest: AirflowRest) -> None:
    """Mark every queued or running run of either migration DAG failed (a test that died must not block
    the next)."""
    for dag_id in (DAG_ID, IN_PLACE_DAG_ID):
        try:
            runs = rest.request("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100}).get("dag_runs", [])
        except requests.RequestException:
            continue
        for run in runs:
            if run.get("state") in ("queued", "running"):
                stop_run(rest, run["dag_run_id"], dag_id=dag_id)


def explain(rest: AirflowRest, run: Run | str, *, lines: int = 40, dag_id: str = DAG_ID) -> str:
    """Task states, then the last ``lines`` log lines of every failed try: the message of a failed check."""
    run_id = run.run_id if isinstance(run, Run) else run
    dag_id = run.dag_id if isinstance(run, Run) else dag_id
    try:
        data = rest.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
    except requests.RequestException as exc:
        return f"(could not read task instances of {run_id}: {exc})"
    tis = sorted(data["task_instances"], key=lambda ti: (ti.get("start_date") or "~", ti["task_id"]))
    out = [f"run {run_id}: " + ", ".join(f"{ti['task_id']}={ti['state']}" for ti in tis)]
    for ti in tis:
        if ti["state"] != "failed":
            continue
        for attempt in range(1, int(ti.get("try_number") or 1) + 1):
            log = task_log(rest, run_id, ti["task_id"], attempt, dag_id=dag_id)
            tail = "\n".join(log.splitlines()[-lines:])
            out.append(f"---- {ti['task_id']} try {attempt} ----\n{tail}")
    return "\n".join(out)


def task_log(rest: AirflowRest, run_id: str, task_id: str, try_number: int, *, dag_id: str = DAG_ID) -> str:
    """One try's log as text: each event, and each exception's type and message (``error_detail``)."""
    try:
        data = rest.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                            headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        return f"(no log: {exc})"
    content = data.get("content", "")
    if not isinstance(content, list):
        return str(content)
    lines = []
    for entry in content:
        if not isinstance(entry, dict):
            lines.append(str(entry))
            continue
        lines.append(str(entry.get("event", "")))
        for error in entry.get("error_detail") or []:
            if isinstance(error, dict):
                lines.append(f"  {error.get('exc_type')}: {error.get('exc_value')}")
    return "\n".join(lines)


def hitl_details(rest: AirflowRest, run_id: str, *, dag_id: str = DAG_ID) -> dict[str, dict[str, Any]]:
    """gate task id -> its Human-in-the-loop detail over REST (``hitlDetails``): request and response."""
    data = rest.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/hitlDetails")
    return {d["task_instance"]["task_id"]: d for d in data.get("hitl_details", [])}


def clear_tasks(rest: AirflowRest, run_id: str, task_ids: Iterable[str], *, dag_id: str = DAG_ID) -> None:
    """Re-run these tasks of a finished run, and nothing downstream of them."""
    rest.request("POST", f"/dags/{dag_id}/clearTaskInstances",
                 json={"dry_run": False, "task_ids": list(task_ids), "dag_run_id": run_id,
                       "only_failed": False, "include_downstream": False, "include_upstream": False,
                       "reset_dag_runs": True})


# ---- reading the twin ---------------------------------------------------------------------------


def core(twin: Twin) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(twin.kube_client())


def apps(twin: Twin) -> k8s.AppsV1Api:
    return k8s.AppsV1Api(twin.kube_client())


def node_groups(twin: Twin) -> dict[str, dict[str, Any]]:
    """Every EKS node group of the cluster as ``describe_nodegroup`` returns it (boto3 against moto)."""
    eks = twin.boto3_client("eks")
    names = eks.list_nodegroups(clusterName=twin.cluster_name)["nodegroups"]
    return {n: eks.describe_nodegroup(clusterName=twin.cluster_name, nodegroupName=n)["nodegroup"]
            for n in sorted(names)}


def nodes_of(twin: Twin, group: str) -> list[k8s.V1Node]:
    return list(core(twin).list_node(label_selector=f"{NODEGROUP_LABEL}={group}").items)


def node_ready(node: k8s.V1Node) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def is_workload_pod(pod: k8s.V1Pod) -> bool:
    """Neither a DaemonSet's pod nor a hostNetwork pod: what cutover must move to Cilium nodes."""
    owners = pod.metadata.owner_references or []
    return not pod.spec.host_network and not any(o.kind == "DaemonSet" for o in owners)


def workload_pods(twin: Twin) -> list[k8s.V1Pod]:
    return [p for p in core(twin).list_pod_for_all_namespaces().items if is_workload_pod(p)]


def pod_ready(pod: k8s.V1Pod) -> bool:
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def describe_pod(pod: k8s.V1Pod) -> str:
    cni = (pod.metadata.annotations or {}).get(CNI_ANNOTATION)
    return f"{pod.metadata.namespace}/{pod.metadata.name} on {pod.spec.node_name} ({pod.status.phase}, cni={cni})"


def mesh_failures(twin: Twin, namespace: str = "default") -> list[str]:
    """goldpinger's ``/check_all`` through the API server's service proxy: every instance answered and
    every nested ``podResults[*].OK`` is true. Returns what is not (empty: the full mesh is healthy)."""
    resp = core(twin).connect_get_namespaced_service_proxy_with_path(
        "goldpinger:8080", namespace, "check_all", _preload_content=False)
    answer = json.loads(resp.data)
    responses = answer.get("responses") or {}
    problems = [] if responses else ["no goldpinger instance answered"]
    for pod, entry in sorted(responses.items()):
        if not entry.get("OK"):
            problems.append(f"{pod}: not reachable ({entry.get('error')})")
            continue
        results = (entry.get("response") or {}).get("podResults") or {}
        if len(results) != len(responses):
            problems.append(f"{pod}: pinged {len(results)} of {len(responses)} instances")
        problems += [f"{pod} -> {peer}: {r.get('error')}" for peer, r in sorted(results.items()) if not r.get("OK")]
    return problems


def deployments_at_full_strength(twin: Twin) -> list[str]:
    """Deployments whose ready replicas fall short of spec.replicas (empty: every one is whole)."""
    short = []
    for d in apps(twin).list_deployment_for_all_namespaces().items:
        want, ready = d.spec.replicas or 0, d.status.ready_replicas or 0
        if ready < want:
            short.append(f"{d.metadata.namespace}/{d.metadata.name}: {ready}/{want} ready")
    return short


# ---- rollback -------------------------------------------------------------------------------------

ROLLBACK_STEPS = ("rollback.start", "rollback.ensure_aws_node", "rollback.restore_old_nodegroups",
                  "rollback.old_nodes_ready", "rollback.uncordon_old_nodes", "rollback.cordon_new_nodes",
                  "rollback.move_workloads_back", "rollback.new_nodes_drained", "rollback.arm_cni_uninstall",
                  "rollback.cni_uninstall_armed", "rollback.uninstall_cilium",
                  "rollback.restore_new_nodegroup", "rollback.new_nodes_gone", "rollback.restore_aws_node",
                  "rollback.ensure_goldpinger", "rollback.mesh_healthy")
def cilium_leftovers(twin: Twin) -> list[str]:
    """Objects of the Cilium release still in the cluster (by name, Helm labels, or release Secrets).
    Events about its pods are not its objects (the API server expires them), nor are the DAG's own
    records (``cilium-migration-*``, left by design)."""
    left = []
    for key, objs in twin.store.dump().items():
        if key.startswith("events"):
            continue
        for obj in objs:
            if is_left_by_design(obj):
                continue
            meta = obj["metadata"]
            labels = meta.get("labels") or {}
            annotations = meta.get("annotations") or {}
            if ("cilium" in meta["name"] or "hubble" in meta["name"] or labels.get("owner") == "helm"
                    or annotations.get("meta.helm.sh/release-name") == "cilium"):
                left.append(f"{key} {meta.get('namespace', '')}/{meta['name']}")
    return left


def cilium_cni_configs(twin: Twin) -> dict[str, list[str]]:
    """Nodes whose CNI configuration directory still holds a file of Cilium's (``*cilium*``, backups
    of other CNIs' files it renamed included)."""
    return {node: files for node, files in twin.cni_configs().items() if any("cilium" in f for f in files)}


def assert_rolled_back(run_tasks: dict[str, str | None], context: str) -> None:
    steps = {t: run_tasks.get(t) for t in ROLLBACK_STEPS}
    assert steps == dict.fromkeys(ROLLBACK_STEPS, "success"), context


def pods_off(twin: Twin, group: str) -> list[str]:
    """Workload pods not Ready on a node of ``group`` (empty: every one runs there)."""
    on_group = {n.metadata.name for n in nodes_of(twin, group)}
    return [describe_pod(p) for p in workload_pods(twin) if p.spec.node_name not in on_group or not pod_ready(p)]


def assert_restored(twin: Twin, before: dict[str, Any], affinity_before: object, *,
                    workloads_moved: bool) -> None:
    """The cluster as before the first run, with no Cilium, no new nodes, a healthy mesh, no PDB broken.
    Workloads that moved away and back are compared by node group, not node."""
    after = cluster_state(twin)
    if workloads_moved:
        before, after = with_workloads_by_group(before), with_workloads_by_group(after)
    diff = differences(before, after)
    assert diff == [], "the cluster differs from its state before the run:\n" + "\n".join(diff)
    old = nodes_of(twin, OLD_GROUP)
    assert len(old) == 3
    assert [n.metadata.name for n in old if n.spec.unschedulable or not node_ready(n)
            or CORDONED_BY in (n.metadata.annotations or {})] == []
    assert pods_off(twin, OLD_GROUP) == [], "workload pods not back on the old nodes"
    assert nodes_of(twin, NEW_GROUP) == []
    assert node_groups(twin)[NEW_GROUP]["scalingConfig"]["desiredSize"] == 0
    assert cilium_leftovers(twin) == []
    assert cilium_cni_configs(twin) == {}, "Cilium's CNI configuration left on nodes"
    assert apps(twin).read_namespaced_daemon_set("aws-node", "kube-system").spec.template.spec.affinity \
        == affinity_before
    assert mesh_failures(twin) == []
    assert twin.disruption is not None and twin.disruption.violations == []


# ---- whole-state snapshots ----------------------------------------------------------------------


def without_heartbeats(obj: Obj) -> Obj:
    """A node minus what its heartbeat rewrites (resourceVersion, each condition's lastHeartbeatTime)."""
    node = copy.deepcopy(obj)
    node["metadata"].pop("resourceVersion", None)
    for cond in (node.get("status") or {}).get("conditions") or []:
        cond.pop("lastHeartbeatTime", None)
    return node


def record_commits(twin: Twin) -> list[str]:
    """Every write the store commits from now on that is not a node heartbeat: event, object and what
    changed."""
    committed: list[str] = []

    def on_commit(event: str, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        heartbeat = rt is NODES and old is not None and without_heartbeats(old) == without_heartbeats(obj)
        if not heartbeat:
            meta = obj["metadata"]
            committed.append(f"{event} {rt.key} {meta.get('namespace', '')}/{meta['name']}: "
                             f"{differences(old or {}, obj)}")

    twin.store.add_listener(on_commit)
    return committed


def comparable(dump: dict[str, list[Obj]]) -> str:
    """The store's dump as sorted JSON, nodes without their heartbeats."""
    return json.dumps({key: [without_heartbeats(o) for o in objs] if key == NODES.key else objs
                       for key, objs in dump.items()}, sort_keys=True)




def is_goldpinger(obj: Obj) -> bool:
    meta = obj.get("metadata") or {}
    return meta.get("name", "").startswith("goldpinger") or (meta.get("labels") or {}).get(
        GOLDPINGER_LABEL) == "goldpinger"


def is_left_by_design(obj: Obj) -> bool:
    """What a rollback leaves on purpose (README, "Rolling back"): goldpinger, and the DAG's own records
    (its progress record and change ledgers, ``managed-by: cilium-migration``)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return is_goldpinger(obj) or labels.get("app.kubernetes.io/managed-by") == "cilium-migration"


# Kinds whose members are replaced as a matter of course (pods are compared by owner and node instead;
# events and endpoints follow pods; controllerrevisions are a DaemonSet's template history).
_CHURNING = frozenset({PODS.key, "events", "endpoints", "controllerrevisions.apps"})


def cluster_state(twin: Twin, *, keep_cni_label: bool = False) -> dict[str, Any]:
    """The cluster as rollback must restore it, normalized (see test_rollback's docstring): nodes (labels
    without ``cni``, taints, cordon, readiness), DaemonSet, Deployment and StatefulSet specs, which objects
    exist, where pods run, node groups' sizes, labels (without ``cni``) and taints. What a rollback
    leaves by design (``is_left_by_design``) is left out."""
    dump = twin.store.dump()
    nodes = {}
    for node in dump[NODES.key]:
        labels = dict(node["metadata"].get("labels") or {})
        if not keep_cni_label:
            labels.pop(CNI_LABEL, None)
        nodes[node["metadata"]["name"]] = {
            "labels": labels, "taints": node["spec"].get("taints") or [],
            "unschedulable": bool(node["spec"].get("unschedulable")),
            "ready": any(c.get("type") == "Ready" and c.get("status") == "True"
                         for c in (node.get("status") or {}).get("conditions") or []),
        }
    specs = {key: {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["spec"]
                   for o in dump[key] if not is_goldpinger(o)}
             for key in (DAEMONSETS.key, "deployments.apps", "statefulsets.apps")}
    objects = sorted(f"{key} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
                     for key, objs in dump.items() if key not in _CHURNING for o in objs if not is_left_by_design(o))
    pods = sorted(f"{p['metadata']['namespace']}/{_owner(p)} on {p['spec'].get('nodeName')} "
                  f"{(p.get('status') or {}).get('phase')}" for p in dump[PODS.key] if not is_goldpinger(p))
    groups = {name: {k: ng.get(k) for k in ("scalingConfig", "labels", "taints", "status")}
              for name, ng in node_groups(twin).items()}
    if not keep_cni_label:  # the old groups' own cni label stays too, as their nodes' (README)
        for group in groups.values():
            group["labels"] = {k: v for k, v in (group["labels"] or {}).items() if k != CNI_LABEL}
    return {"nodes": nodes, "specs": specs, "objects": objects, "pods": pods, "nodegroups": groups}


def with_workloads_by_group(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with each Deployment's and StatefulSet's pod placed on its node's group instead of its
    node: where the scheduler puts a moved pod back within a group is its choice. DaemonSet pods keep
    their node."""
    groups = {name: node["labels"].get(NODEGROUP_LABEL) for name, node in state["nodes"].items()}
    pods = []
    for line in state["pods"]:
        who, _, where = line.partition(" on ")
        node, _, phase = where.partition(" ")
        if ("/ReplicaSet/" in who or "/StatefulSet/" in who) and node in groups:
            line = f"{who} on group {groups[node]} {phase}"
        pods.append(line)
    return {**state, "pods": sorted(pods)}


def _owner(pod: Obj) -> str:
    """DaemonSet name, or Deployment name through its ReplicaSet's pod-template-hash, or the pod's own."""
    owners = pod["metadata"].get("ownerReferences") or []
    if not owners:
        return pod["metadata"]["name"]
    ref = owners[0]
    if ref.get("kind") == "ReplicaSet":
        hash_ = (pod["metadata"].get("labels") or {}).get("pod-template-hash", "")
        return f"ReplicaSet/{ref['name']}".removesuffix(f"-{hash_}") + f" (hash {hash_})"
    return f"{ref.get('kind')}/{ref.get('name')}"


def differences(before: Any, after: Any, path: str = "") -> list[str]:
    """Readable paths where two JSON-like values differ."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after), key=str):
            out += differences(before.get(key, "<absent>"), after.get(key, "<absent>"), f"{path}.{key}")
        return out
    if isinstance(before, list) and isinstance(after, list) and all(isinstance(x, str) for x in before + after):
        gone, new = Counter(before) - Counter(after), Counter(after) - Counter(before)
        return [f"{path}: gone {sorted(gone.elements())}, new {sorted(new.elements())}"] if gone or new else []
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [d for i, (b, a) in enumerate(zip(before, after, strict=True))
                for d in differences(b, a, f"{path}[{i}]")]
    return [] if before == after else [f"{path}: {json.dumps(before, default=str)[:300]} -> "
                                       f"{json.dumps(after, default=str)[:300]}"]


# ---- the migration report (issue 9): its change list against the twin's write log, its tab in a browser ----

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
EKS_KINDS = frozenset({"Nodegroup", "Addon", "HelmRelease"})  # not Kubernetes objects (or, HelmRelease, not one)
LEDGER_PREFIX = "cilium-migration-changes-"
HELM_RELEASE_PREFIX = "sh.helm.release.v1."


def write_key(resource: str, namespace: str | None, name: str) -> str:
    return f"{resource} {namespace or ''}/{name}"


def dag_writes(twin: Twin) -> set[str]:
    """What the DAG's identity wrote to the twin's API server (its request log: verb create, update, patch
    or delete, answered 2xx), as ``resource namespace/name`` (a create names no object in its request:
    ``name`` is empty). Left out, since the report does not list them as such: the run's change ledger
    (the report's own bookkeeping) and Helm's release records (the report lists the release as one
    ``HelmRelease`` change, and each object of it)."""
    assert twin.rbac is not None, "the twin enforces the DAG's RBAC identity"
    user = twin.rbac.username
    out = set()
    for r in list(twin.api.request_log):
        if r.user != user or r.verb not in WRITE_VERBS or not 200 <= r.code < 300:
            continue
        if r.resource == "configmaps" and r.name.startswith(LEDGER_PREFIX):
            continue
        if r.resource == "secrets" and r.name.startswith(HELM_RELEASE_PREFIX):
            continue
        out.add(write_key(r.resource, r.namespace, "" if r.verb == "create" and r.subresource != "eviction"
                          else r.name))
    return out


def report_writes(report: Mapping[str, Any]) -> set[str]:
    """The Kubernetes writes the report's change list says were made, in ``dag_writes``' terms."""
    from twin.resources import BY_KIND

    out = set()
    for change in report.get("changes") or []:
        if change.get("kind") in EKS_KINDS or change.get("dry_run") or change.get("action") == "unchanged":
            continue
        resource = BY_KIND[change["kind"]].plural
        name = "" if change.get("action") == "create" else change["name"]
        out.add(write_key(resource, change.get("namespace"), name))
    return out


SCREENSHOTS = Path(__file__).resolve().parents[2] / "run" / "screenshots"  # kept after the run (git-ignored)
CHROMEDRIVER = "/usr/bin/chromedriver"  # Debian's chromium-driver (scripts/install-debian-packages.sh)


@dataclass
class ReportTab:
    """What a browser showed in a run's "Migration report" tab."""

    tab_url: str
    approvers: list[str]
    changes: int
    plots: list[str]  # ids of the inline SVG plots
    outcome: str
    screenshots: list[Path]


def open_report_tab(base_url: str, username: str, password: str, run_id: str, name: str, *,
                    dag_id: str = DAG_ID) -> ReportTab:
    """Headless Chromium: sign in through the auth manager's login form, open the run's page, click its
    "Migration report" tab, read the report inside the tab's iframe, and save two screenshots under
    ``run/screenshots/``: ``<name>-tab.png`` (the run page with the tab open) and ``<name>-report.png``
    (the whole report, opened at the app's URL that the tab shows)."""
    from urllib.parse import quote

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1500,1500", "--no-proxy-server"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = [SCREENSHOTS / f"{name}-tab.png", SCREENSHOTS / f"{name}-report.png"]
    wait = WebDriverWait(driver, 90)
    try:
        driver.get(f"{base_url}/auth/login")
        wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys(username)
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: "/auth/login" not in d.current_url and d.get_cookie("_token"))
        driver.get(f"{base_url}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}")
        tab = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "a[title='Migration report']")))
        tab.click()
        wait.until(lambda d: d.current_url.endswith("/plugin/migration-report"))
        frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='Migration report']")))
        src = str(frame.get_attribute("src"))
        driver.switch_to.frame(frame)
        wait.until(ec.presence_of_element_located((By.ID, "changes")))
        approvers = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#approvals .approver")]
        changes = len(driver.find_elements(By.CSS_SELECTOR, "#changes tbody tr"))
        plots = [str(e.get_attribute("id")) for e in driver.find_elements(By.CSS_SELECTOR, "svg[id]")]
        outcome = driver.find_element(By.ID, "outcome").text
        driver.switch_to.default_content()
        driver.save_screenshot(str(shots[0]))
        driver.get(src)  # the report the tab shows, alone: a screenshot of all of it
        wait.until(ec.presence_of_element_located((By.ID, "changes")))
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1500, min(int(height) + 120, 16000))
        driver.save_screenshot(str(shots[1]))
        return ReportTab(src, approvers, changes, plots, outcome, shots)
    except Exception:
        driver.save_screenshot(str(SCREENSHOTS / f"{name}-failure.png"))
        raise
    finally:
        driver.quit()


def assert_report_of(rest: AirflowRest, twin: Twin, run: Run, *, outcome: str, approvals: int,
                     screenshot_name: str) -> ReportTab:
    """The run's migration report (issue 9): its change list equals what the twin's write log says the DAG
    wrote (``dag_writes``), it holds no private key; both downloads are files; the run's note
    summarises it with a link to the tab; and a browser shows the tab with the outcome, every approval's
    approver, every change and both plots."""
    report = rest.xcom(run.dag_id, run.run_id, "audit_report", key="report")
    assert isinstance(report, dict) and report.get("outcome") == outcome, report
    assert report_writes(report) == dag_writes(twin), (
        f"only in the report: {sorted(report_writes(report) - dag_writes(twin))}\n"
        f"only in the twin's write log: {sorted(dag_writes(twin) - report_writes(report))}")
    text = json.dumps(report)
    assert "PRIVATE KEY" not in text and "UFJJVkFURSBLRVkt" not in text and twin.rbac_token not in text

    tab = open_report_tab(rest.base_url, rest.username, rest.password, run.run_id, screenshot_name,
                          dag_id=run.dag_id)
    for fmt, media in (("md", "text/markdown"), ("html", "text/html")):
        resp = rest.session.get(f"{rest.base_url}{tab.tab_url.removeprefix(rest.base_url)}",
                                params={"format": fmt}, timeout=60)
        assert resp.ok and resp.headers["content-type"].startswith(media), resp.text[:300]
        assert resp.headers["content-disposition"].startswith("attachment; filename=") and outcome in resp.text

    details = rest.request("GET", f"/dags/{run.dag_id}/dagRuns/{run.run_id}")
    note = details.get("note") or ""
    assert note.startswith(f"Cilium migration: **{outcome}**") and "/plugin/migration-report)" in note, note

    assert tab.outcome == outcome
    assert tab.approvers == [rest.username] * approvals, tab
    assert tab.changes == len(report["changes"]) > 0
    assert {"timeline", "mesh-matrix"} <= set(tab.plots), tab.plots  # and a matrix per gate that kept one
    return tab


def captured_scenario(base: str, directory: Path) -> Path:
    """A rehearsal's scenario: a twin of ``base``, captured by ``python -m twin.capture`` through the
    connections of its read-only identity (``deploy/rbac/capture-readonly.yaml``); the file's path."""
    from twin import capture
    from twin.config import FAST
    from twin.scenario import load_scenario

    readonly = Path(__file__).resolve().parents[2] / "deploy" / "rbac" / "capture-readonly.yaml"
    twin = Twin(load_scenario(base), timing=FAST, rbac=readonly)
    twin.start()
    try:
        env, out = directory / "capture.env", directory / "captured.yaml"
        twin.write_env_file(env, token=twin.rbac_token)
        assert capture.main(["--env-file", str(env), "--out", str(out)]) == 0
    finally:
        twin.stop()
    return out
