"""The migration DAG on Airflow's production shape (CeleryExecutor), run for real against the twin.

One module-scoped fixture starts Airflow as separate processes (api-server, scheduler, dag-processor,
triggerer, a Celery worker; private PostgreSQL and Redis) and runs the DAG twice, each time against a
fresh twin (default scenario) whose Kubernetes API enforces ``deploy/rbac/clusterrole.yaml`` for the
DAG's own token, with the DAG's own AWS access key and a distinctive secret key:

- ``full``: both approvals answered "proceed": the whole migration. At the first eviction of a workload
  pod (``cutover.move_workloads`` running in the worker) the scheduler, the triggerer and the Celery
  worker are killed with SIGKILL (their whole process groups, task runners included) and started again;
- ``rollback``: cutover approved, decommission answered "roll back": the rollback from its furthest point.

Covered:
- run ``full`` succeeds with its tasks executed by the Celery worker, and leaves the cluster migrated
  (aws-node gone, ng-1 at 0, every node a Ready Cilium node); after the kill, the scheduler finds the
  move's task instance without a heartbeat, the task is retried and finishes the move: no workload pod
  lost (every one Ready, every Deployment and StatefulSet at full strength), no PodDisruptionBudget
  violated;
- run ``rollback`` runs every rollback step and leaves the cluster as before (ng-1 back, ng-cilium at 0,
  Cilium gone, aws-node unfenced, nothing cordoned);
- least privilege, Kubernetes: every request the DAG's identity made in both runs was allowed by the
  ClusterRole (nothing denied), every permission of the ClusterRole was used by some request (nothing
  unused), and ``escalate``/``bind`` are granted exactly for the roles the DAG creates without holding
  their permissions;
- least privilege, IAM: the AWS actions called with the DAG's access key are exactly the policy's actions;
- no secret leaks: no task log file (every try) and no XCom of either run contains the twin's tokens or
  the AWS secret key.

Our own requests use the twin's admin token and another access key, so they are never counted.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from cilium_migration.addons import ADDON_ONLY_ACTIONS
from cilium_migration.node_roll import IAM_ACTIONS as IN_PLACE_ONLY_ACTIONS
from localrun.airflow import ROOT, USERNAME
from localrun.approvals import pick
from localrun.demo import DAG_ID
from localrun.distributed import DistributedAirflow
from localrun.rest import AirflowRest, PendingApproval
from twin.apiserver import RequestRecord
from twin.aws_requests import AwsRequest
from twin.rbac import (
    AUTHORIZATION_ONLY_VERBS,
    Policy,
    Rule,
    covers,
    load_policy,
    permission_matches,
    policy_from,
)

# the runs take about 4 minutes, all in the module fixture: the first test's timeout must cover them
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
# The restarted scheduler adopts the dead scheduler's task instances at its next orphan check (once the
# dead one's heartbeat is older than the health threshold), then fails the one without a heartbeat and
# retries it after its backoff: about a minute here, about 10 min with Airflow's defaults (300 s each).
FAST_FAILOVER = {"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                 "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                 "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
                 "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10"}
KILLED = ("scheduler", "triggerer", "celery")

CLUSTERROLE = ROOT / "deploy" / "rbac" / "clusterrole.yaml"
IAM_POLICY = ROOT / "deploy" / "iam-policy.json"
DAG_ACCESS_KEY = "AKIACILIUMMIGRATIONDAG"
DAG_SECRET_KEY = "twinSecretKey/Cilium+Migration/7f3a9c2e5b1d4086"  # distinctive: any hit is a leak
TIMEOUTS = {"nodegroup": 120, "nodes_ready": 120, "rollout": 120, "mesh": 90, "eviction": 120,
            "approval": 600, "poll_interval": 2}
RBAC_KINDS = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")
ROLLBACK_STEPS = ("start", "ensure_aws_node", "restore_old_nodegroups", "old_nodes_ready", "uncordon_old_nodes",
                  "cordon_new_nodes", "move_workloads_back", "new_nodes_drained", "arm_cni_uninstall",
                  "cni_uninstall_armed", "uninstall_cilium", "restore_new_nodegroup", "new_nodes_gone",
                  "restore_aws_node", "ensure_goldpinger", "mesh_healthy")


@dataclass
class ClusterState:
    """What the cluster looks like after a run, read with the admin token and our own access key."""

    nodegroup_sizes: dict[str, int]
    nodes: dict[str, dict[str, Any]]  # name -> {group, ready, unschedulable}
    daemonsets: set[str]  # "namespace/name"
    aws_node_affinity: Any
    rbac_objects: dict[str, dict[str, Any]]  # "kind/namespace/name" -> object (roles and bindings)


@dataclass
class MigrationRun:
    """One DAG run and everything the tests assert on, captured before its twin stopped."""

    name: str
    run_id: str
    state: str
    tasks: dict[str, str | None]
    kube_requests: list[RequestRecord]  # made with the DAG's token
    aws_requests: list[AwsRequest]  # made with the DAG's access key
    secrets: dict[str, str]
    before: ClusterState
    after: ClusterState
    user: str = ""
    xcoms: dict[str, str] = field(default_factory=dict)  # "task_id/key" -> value as served (JSON text)
    killed: list[str] = field(default_factory=list)  # what was killed and restarted mid-run, and when
    lost: list[str] = field(default_factory=list)  # workload pods not Ready, workloads below strength
    violations: list[Any] = field(default_factory=list)  # PodDisruptionBudget violations the twin saw


@dataclass
class Runs:
    airflow: DistributedAirflow
    rest: AirflowRest
    role: Policy
    by_name: dict[str, MigrationRun]

    def __getitem__(self, name: str) -> MigrationRun:
        return self.by_name[name]


def cluster_state(twin: Any) -> ClusterState:
    from kubernetes import client as k8s

    api = twin.kube_client()
    core, apps, rbac = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.RbacAuthorizationV1Api(api)
    eks = twin.boto3_client("eks")
    sizes = {}
    for name in eks.list_nodegroups(clusterName=twin.cluster_name)["nodegroups"]:
        ng = eks.describe_nodegroup(clusterName=twin.cluster_name, nodegroupName=name)["nodegroup"]
        sizes[name] = int(ng["scalingConfig"]["desiredSize"])
    nodes = {
        n.metadata.name: {
            "group": (n.metadata.labels or {}).get("eks.amazonaws.com/nodegroup"),
            "ready": any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or []),
            "unschedulable": bool(n.spec.unschedulable),
        }
        for n in core.list_node().items
    }
    daemonsets = {f"{d.metadata.namespace}/{d.metadata.name}" for d in apps.list_daemon_set_for_all_namespaces().items}
    affinity = None
    if "kube-system/aws-node" in daemonsets:
        aws_node = api.sanitize_for_serialization(apps.read_namespaced_daemon_set("aws-node", "kube-system"))
        affinity = aws_node["spec"]["template"]["spec"].get("affinity")
    objects: dict[str, dict[str, Any]] = {}
    for kind, call in (("roles", rbac.list_role_for_all_namespaces),
                       ("clusterroles", rbac.list_cluster_role),
                       ("rolebindings", rbac.list_role_binding_for_all_namespaces),
                       ("clusterrolebindings", rbac.list_cluster_role_binding)):
        for obj in call().items:
            objects[f"{kind}/{obj.metadata.namespace or ''}/{obj.metadata.name}"] = api.sanitize_for_serialization(obj)
    return ClusterState(sizes, nodes, daemonsets, affinity, objects)


def connect(rest: AirflowRest, twin: Any) -> tuple[str, str]:
    """Connections for the DAG: its own access key and secret, and a kubeconfig with the RBAC token."""
    conns = twin.airflow_connections(token=twin.rbac_token)
    suffix = uuid.uuid4().hex[:8]
    aws, kube = conns["AIRFLOW_CONN_AWS_DEFAULT"], conns["AIRFLOW_CONN_KUBERNETES_DEFAULT"]
    aws_id, kube_id = f"celery_aws_{suffix}", f"celery_k8s_{suffix}"
    rest.put_connection(aws_id, "aws", json.dumps(aws["extra"]), login=DAG_ACCESS_KEY, password=DAG_SECRET_KEY)
    rest.put_connection(kube_id, "kubernetes", json.dumps(kube["extra"]))
    return aws_id, kube_id


def is_moved_workload_pod(rt: Any, obj: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """A Deployment's or StatefulSet's pod (not goldpinger's, not Cilium's) that just started terminating."""
    from twin.resources import PODS

    meta = obj["metadata"]
    labels = meta.get("labels") or {}
    owner = (meta.get("ownerReferences") or [{}])[0].get("kind")
    return (rt is PODS and bool(meta.get("deletionTimestamp")) and not (old or {}).get("metadata", {}).get(
        "deletionTimestamp") and owner in ("ReplicaSet", "StatefulSet")
        and labels.get("app.kubernetes.io/name") != "goldpinger" and labels.get("app.kubernetes.io/part-of") != "cilium")


def kill_and_restart_at_first_eviction(twin: Any, airflow: DistributedAirflow, killed: list[str]) -> None:
    """SIGKILL the scheduler, the triggerer and the worker when the first workload pod is evicted, and
    start them again 3 s later (in a thread: the store calls its listeners under its lock)."""
    fired = threading.Event()

    def crash() -> None:
        airflow.kill(KILLED)
        killed.append(f"killed {', '.join(KILLED)} at {time.strftime('%H:%M:%S')}")
        time.sleep(3)
        airflow.restart(KILLED)
        killed.append(f"restarted at {time.strftime('%H:%M:%S')}")

    def on_commit(event: str, rt: Any, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if not fired.is_set() and is_moved_workload_pod(rt, obj, old):
            fired.set()
            threading.Thread(target=crash, name="kill-airflow", daemon=True).start()

    twin.store.add_listener(on_commit)


def lost_workloads(twin: Any) -> list[str]:
    """Workload pods not Running and Ready, and Deployments/StatefulSets with fewer Ready replicas than
    wanted, from the twin's store."""
    from twin.resources import BY_KEY

    lost = []
    for pod in twin.store.iter_all(BY_KEY["pods"]):
        owner = (pod["metadata"].get("ownerReferences") or [{}])[0].get("kind")
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (pod.get("status") or {}).get("conditions") or [])
        if owner in ("ReplicaSet", "StatefulSet") and not pod["metadata"].get("deletionTimestamp") and not ready:
            lost.append(f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']} not Ready")
    for key in ("deployments.apps", "statefulsets.apps"):
        for obj in twin.store.iter_all(BY_KEY[key]):
            wanted, ready = obj["spec"].get("replicas", 1), (obj.get("status") or {}).get("readyReplicas", 0)
            if ready < wanted:
                lost.append(f"{key} {obj['metadata']['namespace']}/{obj['metadata']['name']}: {ready}/{wanted} Ready")
    return lost


def run_migration(rest: AirflowRest, name: str, answers: dict[str, str],
                  airflow: DistributedAirflow | None = None) -> MigrationRun:
    """A fresh twin, one DAG run answered with ``answers`` (gate -> option prefix), the evidence captured.
    With ``airflow``, its scheduler, triggerer and worker are killed and restarted at the first eviction."""
    from twin.cluster import Twin
    from twin.config import Timing
    from twin.scenario import load_scenario

    scenario = load_scenario("default")
    twin = Twin(scenario, timing=Timing().scaled(0.15), rbac=CLUSTERROLE)
    twin.start()
    killed: list[str] = []
    try:
        before = cluster_state(twin)
        if airflow is not None:
            kill_and_restart_at_first_eviction(twin, airflow, killed)
        aws_id, kube_id = connect(rest, twin)
        kube_start, aws_start = len(twin.api.request_log), len(twin.eks.request_log)
        conf = {"cluster_name": scenario.cluster.name, "region": scenario.cluster.region,
                "aws_conn_id": aws_id, "kubernetes_conn_id": kube_id, "timeouts": TIMEOUTS}
        run_id = rest.trigger(DAG_ID, conf, run_id=f"{name}__{uuid.uuid4().hex[:6]}")

        def decide(approval: PendingApproval) -> str:
            gate = "cutover" if "cutover" in approval.task_id else "decommission"
            return pick(approval, wanted=answers[gate]).option

        state = rest.follow(DAG_ID, run_id, decide=decide, timeout=480)
        user = twin.rbac.username if twin.rbac else ""
        kube = [r for r in twin.api.request_log[kube_start:] if r.user == user]
        aws = [r for r in twin.eks.request_log[aws_start:] if r.access_key == DAG_ACCESS_KEY]
        return MigrationRun(name, run_id, state, rest.task_states(DAG_ID, run_id), kube, aws,
                            {"twin admin token": twin.token, "twin RBAC token": twin.rbac_token,
                             "AWS secret key": DAG_SECRET_KEY},
                            before, cluster_state(twin), user, xcoms(rest, run_id), killed, lost_workloads(twin),
                            list(twin.disruption.violations if twin.disruption else ["no disruption controller"]))
    finally:
        twin.stop()


def xcoms(rest: AirflowRest, run_id: str) -> dict[str, str]:
    """Every XCom of the run, as the REST API serves it."""
    base = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances"
    entries = rest.request("GET", f"{base}/~/xcomEntries", params={"limit": 1000})["xcom_entries"]
    out = {}
    for e in entries:
        value = rest.request("GET", f"{base}/{e['task_id']}/xcomEntries/{e['key']}",
                             params={"map_index": e.get("map_index", -1)})
        out[f"{e['task_id']}/{e['key']}"] = json.dumps(value)
    return out


@pytest.fixture(scope="module")
def runs() -> Iterator[Runs]:
    # not under pytest's tmp_path: PostgreSQL runs as its own user and must reach its data directory
    home = Path(tempfile.mkdtemp(prefix="celery-airflow-"))
    home.chmod(0o755)
    airflow = DistributedAirflow(home=home, extra_env=dict(FAST_FAILOVER))
    try:
        airflow.start()
        rest = AirflowRest(airflow.url, USERNAME, airflow.password)
        rest.login()
        rest.wait_for_dag(DAG_ID)
        by_name = {
            "full": run_migration(rest, "full", {"cutover": "proceed", "decommission": "proceed"}, airflow),
            "rollback": run_migration(rest, "rollback", {"cutover": "proceed", "decommission": "roll"}),
        }
        yield Runs(airflow, rest, load_policy(CLUSTERROLE), by_name)
    finally:
        airflow.stop()
        shutil.rmtree(home, ignore_errors=True)


# ---- the runs themselves -------------------------------------------------------------------------------


def test_full_migration_succeeds_on_celery_workers(runs: Runs) -> None:
    run = runs["full"]
    assert run.state == "success", f"run {run.run_id}: {run.tasks}"
    worker_log = (runs.airflow.home / "celery-worker.log").read_text(errors="replace")
    executed = [t for t, s in run.tasks.items() if s == "success" and not _is_empty_operator(t)]
    assert executed
    missing = [t for t in executed
               if not re.search(rf"Executing workload in Celery:.*task_id='{re.escape(t)}'.*{re.escape(run.run_id)}",
                                worker_log)]
    assert not missing, f"tasks not seen in the Celery worker's log: {missing}"


def test_killing_scheduler_triggerer_and_worker_mid_move_loses_nothing(runs: Runs) -> None:
    run = runs["full"]
    assert len(run.killed) == 2 and run.killed[0].startswith("killed scheduler, triggerer, celery"), run.killed
    assert run.state == "success", f"run {run.run_id}: {run.tasks}"
    tries = runs.rest.request("GET", f"/dags/{DAG_ID}/dagRuns/{run.run_id}/taskInstances/cutover.move_workloads/tries")
    assert len(tries["task_instances"]) >= 2, "the killed try was followed by another"
    assert run.lost == []
    assert run.violations == []


def test_full_migration_leaves_the_cluster_migrated(runs: Runs) -> None:
    after = runs["full"].after
    assert "kube-system/aws-node" not in after.daemonsets
    assert "kube-system/cilium" in after.daemonsets
    assert after.nodegroup_sizes == {"ng-1": 0, "ng-cilium": 3}
    assert {n["group"] for n in after.nodes.values()} == {"ng-cilium"}
    assert all(n["ready"] and not n["unschedulable"] for n in after.nodes.values())


def test_rejected_decommission_rolls_back_every_step(runs: Runs) -> None:
    run = runs["rollback"]
    assert run.tasks["approve_decommission.rejected"] == "success"
    assert {t: run.tasks[f"rollback.{t}"] for t in ROLLBACK_STEPS} == {t: "success" for t in ROLLBACK_STEPS}
    assert run.tasks["decommission.delete_aws_node"] == "skipped"
    after, before = run.after, run.before
    assert "kube-system/cilium" not in after.daemonsets
    assert "kube-system/aws-node" in after.daemonsets
    assert after.aws_node_affinity == before.aws_node_affinity
    assert after.nodegroup_sizes == before.nodegroup_sizes == {"ng-1": 3, "ng-cilium": 0}
    assert {n["group"] for n in after.nodes.values()} == {"ng-1"}
    assert all(n["ready"] and not n["unschedulable"] for n in after.nodes.values())


def _is_empty_operator(task_id: str) -> bool:
    return task_id.endswith((".rejected", ".hold", ".on_gate_failure"))


# ---- least privilege ------------------------------------------------------------------------------------


def _kube_requests(runs: Runs) -> list[RequestRecord]:
    return [r for run in runs.by_name.values() for r in run.kube_requests]


def test_the_dag_authenticates_as_the_bound_user(runs: Runs) -> None:
    assert runs.role.username == "cilium-migration"
    assert all(run.user == runs.role.username and run.kube_requests for run in runs.by_name.values())


def test_every_kubernetes_request_of_the_dag_was_allowed(runs: Runs) -> None:
    denied = sorted({f"{r.verb} {r.api_group or 'core'}/{r.resource}{'/' + r.subresource if r.subresource else ''}"
                     f" {r.namespace}/{r.name} -> {r.code}"
                     for r in _kube_requests(runs) if r.code == 403 or not runs.role.allows(r)})
    assert not denied, "denied requests (add them to deploy/rbac/clusterrole.yaml):\n" + "\n".join(denied)


def _held_for_created_roles(runs: Runs) -> set[tuple[str, str, str]]:
    """(verb, group, resource) that Roles the DAG created grant: holding them is what lets it create those
    Roles without ``escalate`` (kube-apiserver's escalation prevention)."""
    held = set()
    for run in runs.by_name.values():
        created = {k: v for k, v in run.after.rbac_objects.items() if k not in run.before.rbac_objects}
        for key, obj in created.items():
            if key.startswith("roles/"):
                held |= {(p.verb, p.api_group, p.resource) for r in obj.get("rules") or []
                         for p in Rule.from_dict(r, key.split("/")[1]).permissions()}
    return held


def _watched_by_waits() -> set[tuple[str, str]]:
    """(group, resource) of every collection the waits' triggers watch (``watches.WATCHES``)."""
    from cilium_migration import watches

    out = set()
    for targets in watches.WATCHES.values():
        for kind in ("Deployment", "StatefulSet", "DaemonSet"):  # a restarted workload's kind
            for target in targets({"namespace": "ns", "nodegroups": [], "kind": kind}):
                parts = target.path.strip("/").split("/")
                out.add(("" if parts[0] == "api" else parts[1], parts[-1]))
    return out


def _in_place_only_permissions() -> set[str]:
    """The permissions only the ClusterRole ``cilium-migration-in-place`` grants (this run is node-pool's)."""
    docs = [d for d in yaml.safe_load_all(CLUSTERROLE.read_text()) if d]
    in_place = [d for d in docs if d["metadata"]["name"] == "cilium-migration-in-place"]
    rest = [d for d in docs if d["metadata"]["name"] != "cilium-migration-in-place"]
    return {str(p) for p in policy_from(in_place).permissions()} - {str(p) for p in policy_from(rest).permissions()}


def test_every_permission_of_the_clusterrole_was_used(runs: Runs) -> None:
    """Every permission is used, except three kinds, each justified by what the DAG does: ``patch`` on a
    resource it created through Helm (a ``helm upgrade`` patches whatever the new revision changes: a
    new values file may change any of them), what a Role it created grants (held instead of
    ``escalate``), and ``watch`` on what the waits watch (a wait watches only once it defers, and whether
    it defers depends on how fast the cluster got there)."""
    requests = _kube_requests(runs)
    in_place_only = _in_place_only_permissions()  # the in-place DAG's (tests/e2e/test_in_place.py uses them)
    created = {(r.api_group, r.resource) for r in requests if r.verb == "create" and not r.subresource}
    for_roles = _held_for_created_roles(runs)
    watched = _watched_by_waits()
    unused = [str(p) for p in runs.role.permissions()
              if p.verb not in AUTHORIZATION_ONLY_VERBS and not any(permission_matches(p, r) for r in requests)
              and not (p.verb == "patch" and (p.api_group, p.resource) in created)
              and not (p.verb == "watch" and (p.api_group, p.resource) in watched)
              and (p.verb, p.api_group, p.resource) not in for_roles and str(p) not in in_place_only]
    used = sorted({f"{r.verb} {r.api_group or 'core'}/{r.resource}{'/' + r.subresource if r.subresource else ''}"
                   for r in requests if r.resource})
    assert not unused, f"unused permissions: {unused}\nthe DAG used: {used}"


def test_escalate_and_bind_are_granted_exactly_where_the_dag_needs_them(runs: Runs) -> None:
    """Creating a role with permissions the creator lacks needs ``escalate`` on its kind; binding one needs
    ``bind`` on it by name. Both are checked by the API server while creating, never requested."""
    role = runs.role
    needs_escalate: set[str] = set()
    needs_bind: set[tuple[str, str]] = set()
    for run in runs.by_name.values():
        states = (run.before.rbac_objects, run.after.rbac_objects)
        created = {k: v for k, v in states[1].items() if k not in states[0]}
        roles = {**states[0], **states[1]}
        for key, obj in created.items():
            kind, namespace = key.split("/")[0], key.split("/")[1]  # a Role's rules hold in its namespace
            rules = [Rule.from_dict(r, namespace) for r in obj.get("rules") or []]
            if kind in ("roles", "clusterroles") and not covers(role, rules):
                needs_escalate.add(kind)
            if kind in ("rolebindings", "clusterrolebindings"):
                ref = obj["roleRef"]
                ref_kind = "clusterroles" if ref["kind"] == "ClusterRole" else "roles"
                ns = "" if ref_kind == "clusterroles" else key.split("/")[1]
                target = roles.get(f"{ref_kind}/{ns}/{ref['name']}", {})
                if not covers(role, [Rule.from_dict(r, key.split("/")[1]) for r in target.get("rules") or []]):
                    needs_bind.add((ref_kind, ref["name"]))
    granted_escalate = {p.resource for p in role.permissions() if p.verb == "escalate"}
    granted_bind = {(p.resource, p.resource_name) for p in role.permissions() if p.verb == "bind"}
    assert granted_escalate == needs_escalate
    assert granted_bind == needs_bind
    assert not any(p.verb == "impersonate" for p in role.permissions())


def test_iam_policy_lists_exactly_the_aws_actions_the_dag_called(runs: Runs) -> None:
    policy = json.loads(IAM_POLICY.read_text())
    allowed = {a for s in policy["Statement"] if s["Effect"] == "Allow"
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    requests = [r for run in runs.by_name.values() for r in run.aws_requests]
    assert requests and all(r.action for r in requests), [r for r in requests if not r.action]
    called = {r.iam_action for r in requests}
    # the default scenario's aws-node is self-managed: the add-on writes are exercised, and checked
    # against the policy, by tests/integration/test_vpc_cni_addon.py on a managed add-on twin
    # the in-place DAG's node roll terminates instances: tests/e2e/test_in_place.py runs it under the policy
    expected = allowed - ADDON_ONLY_ACTIONS - IN_PLACE_ONLY_ACTIONS
    assert called == expected, f"called {sorted(called)}; the policy allows {sorted(expected)} (+ add-on writes)"


# ---- no secrets leak ------------------------------------------------------------------------------------


def test_no_task_log_contains_a_secret(runs: Runs) -> None:
    for run in runs.by_name.values():
        log_dir = runs.airflow.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run.run_id}"
        files = sorted(p for p in log_dir.rglob("*") if p.is_file())
        ran = [t for t, s in run.tasks.items() if s in ("success", "failed")]
        assert len(files) >= len(ran) - sum(map(_is_empty_operator, ran)) > 10, files
        leaks = [f"{what} in {path.relative_to(log_dir)}" for path in files
                 for what, secret in run.secrets.items() if secret in path.read_text(errors="replace")]
        assert not leaks, leaks


def test_no_xcom_contains_a_secret(runs: Runs) -> None:
    for run in runs.by_name.values():
        assert len(run.xcoms) > 5, run.xcoms
        leaks = [f"{what} in XCom {key}" for key, value in run.xcoms.items()
                 for what, secret in run.secrets.items() if secret in value]
        assert not leaks, leaks

