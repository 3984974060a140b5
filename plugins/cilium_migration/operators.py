"""Operators: one runbook step each, idempotent (check before acting, patch, never recreate).

``MigrationOperator`` is the base: it validates the params into a ``MigrationSpec``, builds the clients
lazily from the connections, checks the progress record (``progress``: a step behind the phase the
migration has reached changes nothing and says why; otherwise its phase is recorded first), runs
``step``, logs every ``Change`` with before/after, keeps them in the run's ledger (``ledger``, per try)
and pushes them as XCom ``changes``. ``PermanentError`` becomes ``AirflowFailException`` (no retry: fix
the input); anything else is left to the task's retries.

Maintenance windows (``windows``): a ``disruptive`` step (cordoning, moving workloads, deleting aws-node,
scaling old groups to zero) starts only inside the run's window. Outside it, it defers to a
``DateTimeTrigger`` at the next window's start (no worker slot), says so in its log and in its XCom
``maintenance_window``, and checks again when woken. The workload move checks before each batch that
the window has room for it. A dry run never waits: it logs what a real run would wait for.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from airflow.providers.standard.operators.hitl import HITLBranchOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from cilium_migration import approvals, audit, ledger, progress
from cilium_migration.audit import Change
from cilium_migration.clients import Clients
from cilium_migration.errors import PermanentError, TemporaryError
from cilium_migration.sensors import SNAPSHOT_TASK_ID, groups_for, sizes_for, snapshot_from, spec_from
from cilium_migration.spec import MigrationSpec

WINDOW_XCOM_KEY = "maintenance_window"  # why a disruptive step waits, and until when (shown in the UI's XCom tab)

__all__ = [
    "AwsNodeDeleteOperator", "AwsNodeFenceOperator", "AwsNodeRestoreOperator", "CiliumInstallOperator",
    "CiliumUninstallOperator", "EksNodegroupScaleOperator", "GoldpingerDeployOperator",
    "GoldpingerRestartOperator", "MigrationApprovalOperator", "MigrationAuditReportOperator",
    "NodeCordonOperator", "NodeLabelOperator", "PreflightCheckOperator", "PreflightSnapshotOperator",
    "RollbackStartOperator", "WorkloadMoveOperator",
]


def defer_outside_window(task: BaseOperator, context: Any, spec: MigrationSpec, *, method_name: str,
                         estimate_s: float | None = None, kwargs: dict[str, Any] | None = None,
                         now: datetime | None = None) -> None:
    """Return when ``task`` may act now: no window, inside it (with room for ``estimate_s`` seconds when
    given), or a dry run (which only logs what a real run would wait for). Otherwise log why, show it in
    XCom ``maintenance_window`` and defer to a ``DateTimeTrigger`` at the next window's start, to resume in
    ``method_name`` (with ``kwargs``)."""
    window = spec.window
    if window is None:
        return
    now = now or datetime.now(UTC)
    if window.fits(now, estimate_s):
        task.log.info("inside the %s", window.describe(now))
        return
    start = window.next_start(now)
    if window.is_open(now):
        why = (f"the next batch (about {estimate_s:.0f}s, the longest batch so far) would not finish before the "
               f"window closes at {window.local(window.closes_at(now) or now)}")
    else:
        why = "outside the maintenance window"
    if spec.dry_run:
        task.log.info("[dry run] %s (%s); a real run would wait for the next window at %s: going on", why,
                      window.describe(now), window.local(start))
        return
    message = f"{why} ({window.describe(now)}); waiting for the next window at {window.local(start)}"
    task.log.info("%s", message)
    context["ti"].xcom_push(key=WINDOW_XCOM_KEY, value=message)
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger

    task.defer(trigger=DateTimeTrigger(moment=start), method_name=method_name, kwargs=kwargs)


class MigrationOperator(BaseOperator):
    """Base of the migration's steps.

    :param aws_conn_id: Airflow connection for EKS (templated; default from the run's params)
    :param kubernetes_conn_id: Airflow connection for the cluster (templated)
    """

    template_fields: Sequence[str] = ("aws_conn_id", "kubernetes_conn_id")
    logs_own_changes = False  # cilium.py logs each change itself: do not log it twice
    follows_progress = True  # a forward step: recorded in, and held back by, the progress record
    disruptive = False  # disrupts workloads: starts only inside the maintenance window

    def __init__(self, *, aws_conn_id: str = "{{ params.aws_conn_id }}",
                 kubernetes_conn_id: str = "{{ params.kubernetes_conn_id }}", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id
        self._region: str | None = None
        self._pending: list[Change] = []  # changes of this try not yet kept (ledger, XCom)

    @cached_property
    def clients(self) -> Clients:
        return Clients(aws_conn_id=self.aws_conn_id, kubernetes_conn_id=self.kubernetes_conn_id,
                       region=self._region)

    def execute(self, context: Any) -> Any:
        spec = spec_from(context)
        self._region = spec.region
        self._pending = []
        try:
            recorded, held, value = self._progress(context, spec)
            self._pending += recorded
            if not held:
                result = self.step(context, spec)
                changes, value = result if isinstance(result, tuple) else (result, None)
                self._pending += changes or []
        except PermanentError as exc:
            raise AirflowFailException(str(exc)) from exc
        self._keep(context, spec, held=held)
        return value

    def _keep(self, context: Any, spec: MigrationSpec, *, held: bool = False) -> None:
        """Log the pending changes and keep them with this try's earlier ones (a step that deferred kept
        what it did before each deferral; XCom is cleared only when a new try starts) in the ledger and
        XCom ``changes``."""
        written = [c for c in self._pending if c.action != "unchanged"]
        self._pending = []
        own = [c for c in written if c.kind == "ConfigMap" and c.name == progress.NAME] if self.logs_own_changes \
            else written  # cilium.py logged its own; the progress record is logged here
        audit.log_changes(own, self.log)
        ti = context["ti"]
        earlier = [r for r in ti.xcom_pull(task_ids=self.task_id, key=audit.XCOM_KEY) or []
                   if isinstance(r, dict) and r.get("try") == ti.try_number]
        records = earlier + [{**c.to_dict(), "try": ti.try_number} for c in written]
        ledger.record(self.clients.core, spec.cilium_namespace, context["run_id"], self.task_id,
                      ti.try_number, records, dry_run=spec.dry_run)
        ti.xcom_push(key=audit.XCOM_KEY, value=records)
        if not records and not held:
            self.log.info("nothing to change: already in the wanted state")

    def _progress(self, context: Any, spec: MigrationSpec) -> tuple[list[Change], bool, Any]:
        """(progress record changes, whether the step is held back, the value to return if it is). A
        disruptive step that may act waits for its maintenance window first (it may defer here)."""
        phase = progress.phase_of(self.task_id)
        if not self.follows_progress or phase not in progress.PHASES:
            self._wait_for_window(context, spec)
            return [], False, None
        current = progress.read(self.clients.core, spec.cilium_namespace)
        if reason := current.why_not(phase, context["run_id"]):
            self.log.info("nothing to do: %s", reason)
            return [], True, self.held_value(current)
        self._wait_for_window(context, spec)
        return progress.advance(self.clients.core, spec.cilium_namespace, current, phase, context["run_id"],
                                dry_run=spec.dry_run), False, None

    def _wait_for_window(self, context: Any, spec: MigrationSpec) -> None:
        """For a disruptive step: defer until the window opens (see ``defer_outside_window``)."""
        if self.disruptive:
            defer_outside_window(self, context, spec, method_name="execute_in_window")

    def execute_in_window(self, context: Any, event: Any = None) -> Any:
        """Woken at a window's start: run the step from the beginning (the window is checked again)."""
        return self.execute(context)

    def _defer_on_check(self, context: Any, spec: MigrationSpec, *, check: str, arguments: dict[str, Any],
                        wait_s: float, method_name: str, kwargs: dict[str, Any] | None = None) -> None:
        """Keep this try's changes so far, then wait in the triggerer (``ClusterCheckTrigger``) up to
        ``wait_s`` for ``check`` to be done; ``method_name`` resumes (see ``_resume_after``)."""
        from cilium_migration.triggers import ClusterCheckTrigger

        self._keep(context, spec)
        self.defer(trigger=ClusterCheckTrigger(check=check, arguments=arguments, aws_conn_id=self.aws_conn_id,
                                               kubernetes_conn_id=self.kubernetes_conn_id, region=self._region,
                                               poll_interval=spec.timeouts.poll_interval,
                                               end_time=time.time() + wait_s),
                   method_name=method_name, kwargs=kwargs, timeout=timedelta(seconds=wait_s + 60))

    def _resume_after(self, context: Any, event: Any, *, what: str, go_on: Any) -> None:
        """Resumed from a deferral: a failed wait fails the task, one that timed out retries it (the retry
        goes on where this one stopped), anything else (a verdict, or a window's start: a time) goes on
        with ``go_on(spec)``; the changes it makes are kept."""
        spec = spec_from(context)
        self._region = spec.region
        self._pending = []
        verdict = event if isinstance(event, dict) else {"status": "success"}
        if verdict.get("status") == "failed":
            raise AirflowFailException(str(verdict.get("message")))
        if verdict.get("status") != "success":
            raise TemporaryError(f"{what}: {verdict.get('message')}; the retry goes on where this try stopped")
        try:
            go_on(spec)
        except PermanentError as exc:
            raise AirflowFailException(str(exc)) from exc
        self._keep(context, spec)

    def held_value(self, current: progress.Progress) -> Any:
        """What a step held back by the progress record returns (its XCom ``return_value``)."""
        return None

    def step(self, context: Any, spec: MigrationSpec) -> list[Change] | tuple[list[Change], Any]:
        raise NotImplementedError


class PreflightCheckOperator(MigrationOperator):
    """Read-only checks that the cluster is the runbook's starting point (or an earlier run's, to resume)."""

    follows_progress = False  # read-only, and a resumed run must still be checked

    def step(self, context: Any, spec: MigrationSpec) -> tuple[list[Change], Any]:
        from cilium_migration import preflight

        verified = preflight.check(self.clients, spec)
        for line in verified:
            self.log.info("preflight OK: %s", line)
        return [], verified


class PreflightSnapshotOperator(MigrationOperator):
    """The state the run will change, as XCom ``return_value`` (rollback restores it), kept in the progress
    record: a re-run, or a run that resumes an earlier one, gives back the snapshot taken first."""

    def step(self, context: Any, spec: MigrationSpec) -> tuple[list[Change], Any]:
        from cilium_migration import preflight

        snap = preflight.snapshot(self.clients, spec)
        self.log.info("snapshot: node groups %s, old nodes %s, resumed=%s", snap["nodegroups"],
                      snap["old_nodes"], snap["resumed"])
        return progress.keep_snapshot(self.clients.core, spec.cilium_namespace, snap, dry_run=spec.dry_run), snap

    def held_value(self, current: progress.Progress) -> Any:
        if current.snapshot is None:
            raise PermanentError(f"the progress record {progress.NAME} has no preflight snapshot: delete it if "
                                 "no migration is under way, then clear this task")
        self.log.info("the snapshot taken first, by run %s: node groups %s", current.run_id,
                      current.snapshot.get("nodegroups"))
        return current.snapshot


class GoldpingerDeployOperator(MigrationOperator):
    """Deploy goldpinger (the runbook's objects) unless ``deploy_goldpinger`` is false."""

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        from cilium_migration import goldpinger

        if not spec.deploy_goldpinger:
            self.log.info("deploy_goldpinger is false: using the goldpinger already in %s",
                          spec.goldpinger_namespace)
            return []
        return goldpinger.deploy(self.clients, spec.goldpinger_namespace, dry_run=spec.dry_run)


class GoldpingerRestartOperator(MigrationOperator):
    """``kubectl rollout restart`` of goldpinger's Deployment (or DaemonSet), once per task per run."""

    def __init__(self, *, kind: str = "Deployment", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kind = kind

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        from cilium_migration import goldpinger

        token = f"{context['run_id']}/{self.task_id}"
        return goldpinger.restart(self.clients.apps, spec.goldpinger_namespace, self.kind, token,
                                  dry_run=spec.dry_run)


class NodeLabelOperator(MigrationOperator):
    """Label the old node groups' nodes ``cni=aws-cni``, and the groups themselves (their EKS labels), so
    a node they launch later (a replacement, a rollback's scale-up) comes up labelled and fenced.

    Only nodes of ``old_nodegroups`` (by ``eks.amazonaws.com/nodegroup``), not ``--all`` as the runbook
    does: safer when a Cilium node already exists (a resumed run) or a group is not being migrated.
    """

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        from cilium_migration import nodegroups, nodes
        from cilium_migration.readiness import AWS_CNI, CNI_LABEL

        old = nodes.nodegroup_nodes(self.clients.core, spec.old_nodegroups)
        if not old:
            raise PermanentError(f"no nodes found in {', '.join(spec.old_nodegroups)}: check old_nodegroups")
        changes = [c for group in spec.old_nodegroups
                   for c in nodegroups.label(self.clients.eks, spec.cluster_name, group, CNI_LABEL, AWS_CNI,
                                             dry_run=spec.dry_run, log=self.log)]
        return changes + nodes.label(self.clients.core, old, CNI_LABEL, AWS_CNI, dry_run=spec.dry_run)


class AwsNodeFenceOperator(MigrationOperator):
    """Add ``cni In [aws-cni]`` to every nodeSelectorTerm of aws-node's required node affinity: through the
    ``vpc-cni`` add-on's configuration when vpc-cni is an EKS add-on, else by patching the DaemonSet."""

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        from cilium_migration import addons, aws_node

        changes = addons.fence(self.clients.eks, self.clients.apps, spec.cluster_name, wait=addons.Wait.of(spec),
                               dry_run=spec.dry_run)
        return changes if changes is not None else aws_node.fence(self.clients.apps, dry_run=spec.dry_run)


class AwsNodeDeleteOperator(MigrationOperator):
    """Delete aws-node (decommission): the ``vpc-cni`` add-on when vpc-cni is an EKS add-on (EKS deletes
    aws-node with it), else the DaemonSet. Disruptive: inside the maintenance window only."""

    disruptive = True

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        from cilium_migration import addons, aws_node

        changes = addons.delete(self.clients.eks, self.clients.apps, spec.cluster_name, wait=addons.Wait.of(spec),
                                dry_run=spec.dry_run)
        return changes if changes is not None else aws_node.delete(self.clients.apps, dry_run=spec.dry_run)


class AwsNodeRestoreOperator(MigrationOperator):
    """Rollback: aws-node as in the preflight snapshot. When the snapshot recorded the ``vpc-cni`` add-on,
    its configuration values are put back (the add-on re-created if deleted); else the DaemonSet is
    recreated if deleted, its fence removed.

    :param fenced: only bring back a deleted aws-node, fenced (``cni In [aws-cni]``), and never remove the
        fence: the rollback's first step, while Cilium nodes exist (aws-node must never run there). The
        fence goes at the end, once the Cilium nodes are gone.
    """

    def __init__(self, *, fenced: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fenced = fenced

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        from cilium_migration import addons, aws_node

        snap = snapshot_from(context) or {}
        changes = addons.restore(self.clients.eks, spec.cluster_name, snap.get("vpc_cni_addon"),
                                 wait=addons.Wait.of(spec), fenced=self.fenced, dry_run=spec.dry_run)
        if changes is not None:
            return changes
        return aws_node.restore(self.clients.apps, snap.get("aws_node"), fenced=self.fenced,
                                dry_run=spec.dry_run)


class EksNodegroupScaleOperator(MigrationOperator):
    """Scale ``role``'s node groups ("new"/"old") to ``size`` ("target": new_node_count, "zero",
    "snapshot": the preflight snapshot's min, max and desired size), with ``update_nodegroup_config``;
    dry run only logs."""

    def __init__(self, *, role: str, size: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.role, self.size = role, size
        self.disruptive = size == "zero"  # removing nodes: inside the maintenance window only

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        from cilium_migration import nodegroups

        changes: list[Change] = []
        recorded = (snapshot_from(context) or {}).get("nodegroups") or {} if self.size == "snapshot" else {}
        for group, size in sizes_for(spec, self.role, self.size, context).items():
            changes += nodegroups.scale(self.clients.eks, spec.cluster_name, group, size,
                                        exact=recorded.get(group), dry_run=spec.dry_run, log=self.log)
        return changes


class CiliumInstallOperator(MigrationOperator):
    """Install (or upgrade) Cilium with the runbook's values (the strategy's: fenced off the old nodes, or
    beside aws-node in place): render the chart, apply, record the release.

    :param unmanaged_pod_restart: ``operator.unmanagedPodWatcher.restart`` (false until decommission)
    """

    logs_own_changes = True

    def __init__(self, *, unmanaged_pod_restart: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unmanaged_pod_restart = unmanaged_pod_restart

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        from cilium_migration import cilium

        overrides = cilium.deep_merge(spec.cilium_values, {
            "operator": {"unmanagedPodWatcher": {"restart": self.unmanaged_pod_restart}}})
        values = cilium.strategy_values(in_place=spec.in_place, cluster_name=spec.cluster_name, region=spec.region,
                                        egress_interface=spec.egress_masquerade_interface, overrides=overrides)
        return list(cilium.deploy(self.clients.api_client, spec.chart_ref, values, release=spec.release,
                                  namespace=spec.cilium_namespace, dry_run=spec.dry_run,
                                  version=spec.cilium_version))


class CiliumCniUninstallOperator(MigrationOperator):
    """Rollback, before the uninstall: ``cni.uninstall=true`` on the deployed release, so every agent removes
    Cilium's CNI configuration from its node when it stops."""

    logs_own_changes = True

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        from cilium_migration import cilium

        return list(cilium.arm_cni_uninstall(self.clients.api_client, spec.chart_ref, release=spec.release,
                                             namespace=spec.cilium_namespace, dry_run=spec.dry_run,
                                             version=spec.cilium_version))


class CiliumUninstallOperator(MigrationOperator):
    """Rollback: remove the Cilium release (every object it owns, then its release Secrets)."""

    logs_own_changes = True

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        from cilium_migration import cilium

        return list(cilium.uninstall(self.clients.api_client, release=spec.release,
                                     namespace=spec.cilium_namespace, dry_run=spec.dry_run))


class NodeCordonOperator(MigrationOperator):
    """Cordon (or with ``cordon=False`` uncordon) the nodes of ``role``'s node groups. Cordoning is
    disruptive (inside the maintenance window only); uncordoning is not."""

    def __init__(self, *, role: str, cordon: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.role, self.cordon = role, cordon
        self.disruptive = cordon

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        from cilium_migration import nodes

        targets = nodes.nodegroup_nodes(self.clients.core, groups_for(spec, self.role))
        if not self.cordon and self.role == "old":
            snap = snapshot_from(context) or {}
            keep = set(snap.get("old_nodes_cordoned") or [])  # cordoned before the run: leave them
            targets = [n for n in targets if n["metadata"]["name"] not in keep]
        return nodes.set_cordoned(self.clients.core, targets, self.cordon, dry_run=spec.dry_run)


class WorkloadMoveOperator(MigrationOperator):
    """Evict workload pods off ``role``'s nodes in batches of ``eviction_batch_size``, PDB-respecting,
    each batch's replacements Ready before the next: on Cilium nodes when moving off the old groups
    (cutover), on aws-cni nodes when moving off the new group (rollback). The nodes must be cordoned
    first.

    One batch at a time: evict it, wait up to ``quick_wait_s`` in the worker for its replacements, then
    in the triggerer (``BatchReplacedTrigger``, up to the ``eviction`` timeout). Before each batch the
    pods still on the nodes are listed again (a retried or cleared task goes on from there) and the
    maintenance window must have room for it, estimated as the longest batch so far; else the move
    waits for the next window. A dry run evicts every batch with ``dryRun=All`` at once.
    """

    disruptive = True  # the window is checked before each batch (``_batches``), not once

    def __init__(self, *, role: str = "old", quick_wait_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.role = role
        self.quick_wait_s = quick_wait_s

    def _wait_for_window(self, context: Any, spec: MigrationSpec) -> None:
        return None  # per batch, with the batches' estimate

    @property
    def target_cni(self) -> str:
        from cilium_migration.readiness import AWS_CNI, CILIUM

        return CILIUM if self.role == "old" else AWS_CNI

    def _node_names(self, spec: MigrationSpec) -> list[str]:
        from cilium_migration import nodes

        return [n["metadata"]["name"] for n in nodes.nodegroup_nodes(self.clients.core, groups_for(spec, self.role))]

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        from cilium_migration import workloads

        if spec.dry_run:
            defer_outside_window(self, context, spec, method_name="execute_in_window")  # logs only
            return workloads.move(self.clients.core, self._node_names(spec), batch_size=spec.eviction_batch_size,
                                  batch_timeout=spec.timeouts.eviction, force=spec.force_evictions, dry_run=True,
                                  log=self.log, target_cni=self.target_cni)
        self._batches(context, spec, durations=[], number=0)
        return []

    def _batches(self, context: Any, spec: MigrationSpec, *, durations: list[float], number: int) -> None:
        """Move batch after batch until no workload pod is left; defers (after keeping the changes so far)
        whenever a batch's replacements take longer than ``quick_wait_s`` or the window has no room."""
        from cilium_migration import workloads

        core = self.clients.core
        names = self._node_names(spec)
        missing: set[str] = set()  # listed on the nodes, but gone when evicted
        while pods := workloads.movable(core, names, force=spec.force_evictions):
            estimate = max(durations) if durations else None
            state = {"durations": durations, "number": number}
            if spec.window is not None:
                if self._pending:
                    self._keep(context, spec)
                defer_outside_window(self, context, spec, method_name="resume_batches", estimate_s=estimate,
                                     kwargs=state)
            chosen = pods[:spec.eviction_batch_size]
            if {workloads.listed([p]) for p in chosen} <= missing:
                raise TemporaryError(f"pods still listed on the nodes but gone when evicted: "
                                     f"{workloads.listed(chosen)}")
            number += 1
            started = time.time()
            deadline = time.monotonic() + spec.timeouts.eviction
            self.log.info("batch %d: evicting %s (%d workload pod(s) left on the nodes)", number,
                          workloads.listed(chosen), len(pods))
            changes, batch = workloads.evict_batch(core, chosen, deadline=deadline, force=spec.force_evictions,
                                                   log=self.log, target_cni=self.target_cni)
            self._pending += changes
            if batch is None:
                missing |= {workloads.listed([p]) for p in chosen}
                continue
            quick_end = time.monotonic() + min(self.quick_wait_s, spec.timeouts.eviction)
            while (waiting := workloads.waiting_for_replacements(core, batch)) and time.monotonic() < quick_end:
                time.sleep(min(spec.timeouts.poll_interval, 1.0))
            if waiting:
                self._keep(context, spec)
                self._defer_for_replacements(spec, batch, started, {**state, "number": number})
            durations = [*durations, time.time() - started]
            self.log.info("batch %d: %d pod(s) moved in %.0fs, replacements Ready on %s nodes", number,
                          len(batch.evicted), durations[-1], self.target_cni)
        self.log.info("no workload pod left on %s nodes (%d batch(es))", self.role, number)
        self._keep(context, spec)

    def _defer_for_replacements(self, spec: MigrationSpec, batch: Any, started: float, state: dict[str, Any]) -> None:
        from cilium_migration.batch_trigger import BatchReplacedTrigger

        self.log.info("batch %d: waiting in the triggerer (up to %.0fs) for the replacements", state["number"],
                      spec.timeouts.eviction)
        self.defer(trigger=BatchReplacedTrigger(batch=batch.to_dict(), aws_conn_id=self.aws_conn_id,
                                                kubernetes_conn_id=self.kubernetes_conn_id, region=self._region,
                                                poll_interval=min(spec.timeouts.poll_interval, 2.0),
                                                end_time=started + spec.timeouts.eviction),
                   method_name="batch_replaced", kwargs={**state, "started": started},
                   timeout=timedelta(seconds=spec.timeouts.eviction + 60))

    def batch_replaced(self, context: Any, event: dict[str, Any], durations: list[float], number: int,
                       started: float) -> Any:
        """Woken by ``BatchReplacedTrigger``: record the batch's duration, go on with the next."""
        spec = self._resume(context)
        status = event.get("status")
        if status == "failed":
            raise AirflowFailException(f"batch {number}: {event.get('message')}")
        if status != "success":  # timeout or error: the task's retry lists the pods left and goes on
            raise TemporaryError(f"batch {number}: no replacement Ready on a {self.target_cni} node in "
                                 f"{spec.timeouts.eviction}s: {event.get('message')}")
        durations = [*durations, time.time() - started]
        self.log.info("batch %d: moved in %.0fs; %s", number, durations[-1], event.get("message"))
        return self._go_on(context, spec, durations=durations, number=number)

    def resume_batches(self, context: Any, event: Any = None, durations: list[float] | None = None,
                       number: int = 0) -> Any:
        """Woken at a window's start: go on with the next batch (the window is checked again)."""
        spec = self._resume(context)
        return self._go_on(context, spec, durations=list(durations or []), number=number)

    def _resume(self, context: Any) -> MigrationSpec:
        spec = spec_from(context)
        self._region = spec.region
        self._pending = []
        return spec

    def _go_on(self, context: Any, spec: MigrationSpec, *, durations: list[float], number: int) -> Any:
        try:
            self._batches(context, spec, durations=durations, number=number)
        except PermanentError as exc:
            raise AirflowFailException(str(exc)) from exc
        return None


class WorkloadRestartOperator(MigrationOperator):
    """In place: ``kubectl rollout restart`` of every Deployment, StatefulSet and DaemonSet with a pod not on
    ``onto`` (``cilium``; ``aws-cni`` for the rollback), namespace by namespace (``restart_namespaces``
    first), one workload at a time (``restarts``). Before each: the maintenance window must be open and its
    PodDisruptionBudgets must allow a disruption (waited for up to the ``eviction`` timeout); after each,
    its rollout is waited for, in the worker for ``quick_wait_s`` then in the triggerer. Pods no restart
    moves (bare pods, other controllers, OnDelete) are logged for a human; the gate after this step
    names them until they are gone. The plan is made again from the cluster after every wait, so a retry
    restarts nothing twice. Disruptive.
    """

    disruptive = True
    quick_wait_s = 10.0

    def __init__(self, *, onto: str = "cilium", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.onto = onto

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        self._restarts(context, spec, done=[])
        return []

    def _restarts(self, context: Any, spec: MigrationSpec, *, done: list[str]) -> None:
        """Restart the planned workloads not in ``done`` (their rollouts finished in this try)."""
        from cilium_migration import restarts

        token = f"{context['run_id']}/{self.task_id}"
        plan = restarts.restart_plan(self.clients.apps, self.clients.core, self.clients.custom,
                                     spec.restart_namespaces, onto=self.onto)
        for pod_list, why in ((plan.bare_pods, "no controller"), (plan.other_pods, "no restart here moves them")):
            if pod_list:
                self.log.warning("%d pod(s) for a human (%s): %s", len(pod_list), why,
                                 ", ".join(f"{p['metadata'].get('namespace')}/{p['metadata'].get('name')}"
                                           for p in pod_list[:20]))
        todo = [w for w in plan.workloads if w.target not in done]
        self.log.info("%d workload(s) to restart onto %s: %s", len(todo), self.onto,
                      ", ".join(w.target for w in todo[:20]) or "none")
        for workload in todo:
            if spec.window is not None:
                self._keep(context, spec)
                defer_outside_window(self, context, spec, method_name="resume_restarts", kwargs={"done": done})
            if spec.dry_run:
                self._pending += [c for c in [restarts.restart(self.clients.apps, workload, restarted_at=token,
                                                               dry_run=True)] if c]
                continue
            self._wait_for_budget(spec, workload)
            change = restarts.restart(self.clients.apps, workload, restarted_at=token)
            if change is not None:
                self._pending.append(change)
                self.log.info("restarted %s (%d pod(s) to move)", workload.target, len(workload.old_cni_pods))
            current = restarts.read(self.clients.apps, workload) or {}
            if current and not restarts.rolls_on_restart(current):
                self.log.warning("%s updates OnDelete: a restart replaces none of its pods; delete them yourself "
                                 "(%s)", workload.target, ", ".join(workload.old_cni_pods))
                done = [*done, workload.target]
                continue
            end = time.monotonic() + self.quick_wait_s
            while not (state := self._rolled_out(workload))[0] and time.monotonic() < end:
                time.sleep(min(spec.timeouts.poll_interval, 1.0))
            if not state[0]:
                self._defer_for_rollout(context, spec, workload, done)
            self.log.info("%s", state[1])
            done = [*done, workload.target]

    def _rolled_out(self, workload: Any) -> tuple[bool, str]:
        from cilium_migration import checks

        verdict = checks.workload_rolled_out(self.clients, kind=workload.kind, namespace=workload.namespace,
                                             workload=workload.name)
        return verdict.status == checks.DONE, verdict.message

    def _wait_for_budget(self, spec: MigrationSpec, workload: Any) -> None:
        from cilium_migration import restarts

        end = time.monotonic() + spec.timeouts.eviction
        while reason := restarts.blocked_by_budget(self.clients.policy, workload):
            if time.monotonic() >= end:
                raise TemporaryError(f"{reason}; waited {spec.timeouts.eviction}s")
            self.log.info("%s", reason)
            time.sleep(spec.timeouts.poll_interval)

    def _defer_for_rollout(self, context: Any, spec: MigrationSpec, workload: Any, done: list[str]) -> None:
        self.log.info("waiting in the triggerer (up to %.0fs) for %s to roll out", spec.timeouts.rollout,
                      workload.target)
        self._defer_on_check(context, spec, check="workload_rolled_out", wait_s=spec.timeouts.rollout,
                             arguments={"kind": workload.kind, "namespace": workload.namespace,
                                        "workload": workload.name},
                             method_name="resume_restarts", kwargs={"done": [*done, workload.target]})

    def resume_restarts(self, context: Any, event: Any = None, done: list[str] | None = None) -> Any:
        """Woken by a rollout's trigger (or at the window's start): plan again from the cluster, go on."""
        return self._resume_after(context, event, what="rollout",
                                  go_on=lambda spec: self._restarts(context, spec, done=list(done or [])))


class NodeRollOperator(MigrationOperator):
    """In place, once aws-node is gone: replace every node the old groups had at the snapshot, one at a time
    (``node_roll``: surge by one, cordon, evict PDB-respecting, terminate the instance, the group launches a
    clean one; back to the snapshot's size at the end). Every wait defers (``ClusterCheckTrigger``); each
    replacement starts only inside the maintenance window. Disruptive."""

    disruptive = True

    def step(self, context: Any, spec: MigrationSpec) -> list[Change]:
        self._roll(context, spec)
        return []

    def _roll(self, context: Any, spec: MigrationSpec) -> None:
        from cilium_migration import node_roll, nodegroups, nodes, workloads
        from cilium_migration.readiness import name_of

        snap = snapshot_from(context) or {}
        old_nodes, recorded = list(snap.get("old_nodes") or []), dict(snap.get("nodegroups") or {})
        for group in spec.old_nodegroups:
            while True:
                scaling = nodegroups.describe(self.clients.eks, spec.cluster_name, group).get("scalingConfig") or {}
                found = nodes.nodegroup_nodes(self.clients.core, [group])
                action = node_roll.next_action(group, scaling, recorded.get(group) or {}, found, old_nodes)
                self.log.info("%s", action.message)
                if action.kind == node_roll.DONE:
                    break
                if spec.dry_run:
                    self.log.info("[dry run] %s: a real run would act here; going on", action.kind)
                    break
                if action.kind == node_roll.SURGE:
                    self._pending += nodegroups.scale(self.clients.eks, spec.cluster_name, group, action.size,
                                                      log=self.log)
                elif action.kind == node_roll.SETTLE:
                    self._pending += nodegroups.scale(self.clients.eks, spec.cluster_name, group, action.size,
                                                      exact=recorded[group], log=self.log)
                elif action.kind == node_roll.REPLACE:
                    if spec.window is not None:
                        self._keep(context, spec)
                        defer_outside_window(self, context, spec, method_name="resume_roll")
                    [node] = [n for n in found if name_of(n) == action.node]
                    self._pending += nodes.set_cordoned(self.clients.core, [node], True)
                    self._pending += workloads.move(self.clients.core, [action.node],
                                                    batch_size=spec.eviction_batch_size,
                                                    batch_timeout=spec.timeouts.eviction,
                                                    force=spec.force_evictions, log=self.log)
                    self._pending += node_roll.terminate(self.clients.ec2, self.clients.core, node)
                else:
                    self._wait(context, spec, action)

    def _wait(self, context: Any, spec: MigrationSpec, action: Any) -> None:
        self._defer_on_check(context, spec, check=action.check, arguments=action.arguments,
                             wait_s=spec.timeouts.nodegroup, method_name="resume_roll")

    def resume_roll(self, context: Any, event: Any = None) -> Any:
        """Woken by the wait's trigger (or at the window's start): decide again from the cluster, go on."""
        return self._resume_after(context, event, what="node roll", go_on=lambda spec: self._roll(context, spec))


class RollbackStartOperator(MigrationOperator):
    """Start of the rollback path: skips it (and so every rollback step) when preflight took no snapshot,
    i.e. nothing was changed."""

    def step(self, context: Any, spec: MigrationSpec) -> tuple[list[Change], Any]:
        snap = snapshot_from(context)
        if not snap:
            raise AirflowSkipException(f"no snapshot from {SNAPSHOT_TASK_ID}: nothing was changed, "
                                       "nothing to roll back")
        self.log.info("rolling back to the preflight snapshot: %s", snap)
        current = progress.read(self.clients.core, spec.cilium_namespace)
        recorded = progress.advance(self.clients.core, spec.cilium_namespace, current, progress.ROLLBACK,
                                    context["run_id"], dry_run=spec.dry_run)
        return recorded, {"snapshot_nodegroups": snap.get("nodegroups")}


class MigrationApprovalOperator(HITLBranchOperator):
    """A human decides (UI "Required Actions" or REST ``hitlDetails``); the body is the evidence.

    ``options_mapping`` maps each option to the task it leads to. ``defaults`` (applied when the
    ``timeouts.approval`` param runs out) must never be "proceed".

    With a maintenance window, the body shows it, and "proceed" outside it is recorded (the HITL answer
    stays) but the branch waits: the task defers to the next window's start (no worker slot), then
    follows "proceed". Other answers branch at once. A dry run never waits.
    """

    def __init__(self, *, evidence_title: str, mesh_task_id: str, changes: Sequence[str],
                 kubernetes_conn_id: str = "{{ params.kubernetes_conn_id }}", **kwargs: Any) -> None:
        kwargs.setdefault("body", "")
        kwargs.setdefault("response_timeout", timedelta(days=1))
        super().__init__(**kwargs)
        if self.defaults and approvals.PROCEED in self.defaults:
            raise ValueError("an approval must never default to proceed")
        self.evidence_title = evidence_title
        self.mesh_task_id = mesh_task_id
        self.changes = list(changes)
        self.kubernetes_conn_id = kubernetes_conn_id

    template_fields: Sequence[str] = ("subject", "body", "kubernetes_conn_id")

    def execute(self, context: Any) -> Any:
        spec = spec_from(context)
        mesh = context["ti"].xcom_pull(task_ids=self.mesh_task_id, key="mesh")
        try:
            from cilium_migration import nodes
            from cilium_migration.readiness import node_summary

            clients = Clients(kubernetes_conn_id=self.kubernetes_conn_id, region=spec.region)
            node_lines = [node_summary(n) for n in nodes.list_nodes(clients.core)]
        except Exception as exc:  # evidence is best effort; the decision is the human's
            node_lines = [f"could not list nodes: {exc}".splitlines()[0]]
        extra = ["**Dry run**: nothing was changed; approving continues the dry run."] if spec.dry_run else []
        if spec.window is not None:
            extra.append(f"**Maintenance window**: {spec.window.describe(datetime.now(UTC))}. \"{approvals.PROCEED}\" "
                         "outside the window is recorded, and the run waits for the window to start the next phase.")
        self.response_timeout = timedelta(seconds=spec.timeouts.approval)  # then ``defaults`` apply
        self.body = approvals.evidence(title=self.evidence_title, mesh=mesh, node_lines=node_lines,
                                       changes=self.changes, options=self.options, extra=extra)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """The human's answer: "proceed" outside the maintenance window waits for it (``proceed_in_window``)."""
        if "error" not in event and approvals.PROCEED in (event.get("chosen_options") or []):
            self._defer_until_window(context, event)
        return super().execute_complete(context, event)

    def proceed_in_window(self, context: Any, event: Any = None, answer: dict[str, Any] | None = None) -> Any:
        """Woken at a window's start after "proceed": check again, then branch."""
        recorded = dict(answer or {})
        if isinstance(recorded.get("responded_at"), str):
            recorded["responded_at"] = datetime.fromisoformat(recorded["responded_at"])
        self._defer_until_window(context, recorded)
        return super().execute_complete(context, recorded)

    def _defer_until_window(self, context: Any, answer: dict[str, Any]) -> None:
        spec = spec_from(context)
        window = spec.window
        if window is None or window.is_open(datetime.now(UTC)) or spec.dry_run:
            defer_outside_window(self, context, spec, method_name="proceed_in_window")  # logs only
            return
        who = (answer.get("responded_by_user") or {}).get("name") if isinstance(answer.get("responded_by_user"),
                                                                                 dict) else None
        self.log.info("answer %r%s recorded; outside the maintenance window the run waits for the window",
                      answer.get("chosen_options"), f" by {who}" if who else "")
        kept = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in answer.items()}
        defer_outside_window(self, context, spec, method_name="proceed_in_window", kwargs={"answer": kept})


class MigrationAuditReportOperator(BaseOperator):
    """Collect every change of every try (the run's ledger, and XCom ``changes`` for what the ledger does
    not hold: a dry run's) into a Markdown report (XCom ``return_value``, task log), and pushes what the
    "Migration report" tab needs from the cluster as XCom ``report`` (``report.collect``).

    Runs whatever happened (``trigger_rule=all_done``) and fails when a task failed, so a run rolled
    back after a failure is not shown as a success (a rollback a human chose is a success).
    """

    template_fields: Sequence[str] = ("aws_conn_id", "kubernetes_conn_id")

    def __init__(self, *, aws_conn_id: str = "{{ params.aws_conn_id }}",
                 kubernetes_conn_id: str = "{{ params.kubernetes_conn_id }}", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id

    def execute(self, context: Any) -> str:
        ti = context["ti"]
        dag = context["dag"]
        task_ids = [t for t in dag.task_ids if t != self.task_id]
        changes = self._changes(context, task_ids)
        states = self._task_states(context)
        outcome = outcome_of(states)
        text = audit.report(changes, outcome=outcome, run_id=context["run_id"], task_states=states)
        for line in text.splitlines():
            self.log.info("%s", line)
        ti.xcom_push(key="outcome", value=outcome)
        ti.xcom_push(key="report", value=self._report(context, changes, outcome))
        if outcome.startswith("failed") or outcome.startswith("rolled back after failure"):
            ti.xcom_push(key="return_value", value=text)
            raise AirflowFailException(f"migration {outcome}")
        return text

    def _changes(self, context: Any, task_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """task id -> its change records of every try (ledger first, then XCom's of tries it lacks)."""
        ti = context["ti"]
        spec = spec_from(context)
        try:
            clients = Clients(aws_conn_id=self.aws_conn_id, kubernetes_conn_id=self.kubernetes_conn_id,
                              region=spec.region)
            kept = ledger.with_tries(ledger.read(clients.core, spec.cilium_namespace, context["run_id"], task_ids))
        except Exception as exc:  # the report must still come out: say what it misses
            self.log.warning("could not read the change ledger (%s): only the last try of each task is listed",
                             str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            kept = {}
        out: dict[str, list[dict[str, Any]]] = {}
        for task in task_ids:
            records = list(kept.get(task, []))
            tries = {r.get("try") for r in records}
            records += [r for r in ti.xcom_pull(task_ids=task, key=audit.XCOM_KEY) or [] if r.get("try") not in tries]
            if records:
                out[task] = records
        return out

    def _report(self, context: Any, changes: dict[str, list[dict[str, Any]]], outcome: str) -> dict[str, Any]:
        """XCom ``report``, for the "Migration report" tab: every change of every try (redacted where made),
        the run's params, the progress record, the cluster after and goldpinger's mesh node by node."""
        import json

        from cilium_migration.report import collect

        spec = spec_from(context)
        data: dict[str, Any] = {"outcome": outcome, "changes": collect.change_rows(changes),
                                "params": json.loads(json.dumps(dict(context["params"]), default=str))}
        try:
            clients = Clients(aws_conn_id=self.aws_conn_id, kubernetes_conn_id=self.kubernetes_conn_id,
                              region=spec.region)
            data["progress"] = collect.progress_summary(clients, spec.cilium_namespace)
            data["cluster_after"] = collect.cluster_summary(clients, spec)
            data["mesh_matrix"] = collect.read_mesh_matrix(clients, spec.goldpinger_namespace)
        except Exception as exc:  # the report must still come out: say what it misses
            self.log.warning("could not read the cluster for the report: %s", str(exc).splitlines()[0] if str(exc)
                             else type(exc).__name__)
        return data

    def _task_states(self, context: Any) -> dict[str, str]:
        try:
            raw = context["ti"].get_task_states(dag_id=context["dag"].dag_id, run_ids=[context["run_id"]])
        except Exception as exc:
            self.log.warning("could not read task states: %s", exc)
            return {}
        per_run = raw.get(context["run_id"], raw) if isinstance(raw, dict) else {}
        return {str(k): str(v) for k, v in per_run.items() if v is not None}


def outcome_of(states: dict[str, str]) -> str:
    """One line for the run: completed, held, rolled back (and why), or failed."""
    failed = sorted(t for t, s in states.items() if s == "failed")
    rollback_ran = states.get("rollback.start") == "success"
    rollback_done = all(s == "success" for t, s in states.items() if t.startswith("rollback.")
                        and t != "rollback.on_gate_failure")
    if rollback_ran:
        why = f"failure of {', '.join(failed)}" if [t for t in failed if not t.startswith("rollback.")] \
            else "rejection"
        if not rollback_done:
            return f"failed: rollback after {why} did not complete ({', '.join(failed)})"
        return f"rolled back after {why}"
    if failed:
        return f"failed: {', '.join(failed)}"
    if states.get("approve_decommission.hold") == "success":
        return "held after cutover (aws-node and old node groups kept)"
    if states.get("decommission.final_mesh_healthy") == "success":
        return "completed"
    return "incomplete: " + ", ".join(sorted(t for t, s in states.items() if s not in ("success", "skipped")))
