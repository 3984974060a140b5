"""Sensors that wait for cluster state, in the Amazon provider's shape.

``ClusterStateSensor`` is the base: ``get_state()`` runs one check from ``checks`` (the readiness rules);
``poke`` fails fast on a terminal failure ("Terminal state reached ..."); with ``deferrable=True`` the wait
runs in ``ClusterCheckTrigger`` (``execute -> defer -> execute_complete``). In a dry run a sensor
evaluates once, logs what it would wait for, and succeeds: the states a dry run never creates are not
waited for. Timeouts and poll intervals come from the run's ``timeouts`` param.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from cilium_migration import checks
from cilium_migration.clients import Clients
from cilium_migration.errors import PermanentError, TemporaryError, api_status, is_temporary_status
from cilium_migration.spec import MigrationSpec

SNAPSHOT_TASK_ID = "preflight.snapshot"
ROLES = ("old", "new")
SIZES = ("target", "zero", "snapshot")


def spec_from(context: Any) -> MigrationSpec:
    try:
        return MigrationSpec.from_params(context["params"])
    except PermanentError as exc:
        raise AirflowFailException(str(exc)) from exc


def groups_for(spec: MigrationSpec, role: str) -> list[str]:
    """The node groups of ``role``: ``old`` (served by the AWS VPC CNI) or ``new`` (Cilium's). In place
    both are the old groups: Cilium runs beside aws-node on their nodes."""
    return list(spec.old_nodegroups) if role == "old" or spec.in_place else [spec.new_nodegroup]


def snapshot_from(context: Any) -> dict[str, Any] | None:
    value = context["ti"].xcom_pull(task_ids=SNAPSHOT_TASK_ID)
    return value if isinstance(value, dict) else None


def sizes_for(spec: MigrationSpec, role: str, size: str, context: Any) -> dict[str, int]:
    """Per node group, the size wanted: the param (new group), 0, or the preflight snapshot's."""
    groups = groups_for(spec, role)
    if size == "zero":
        return dict.fromkeys(groups, 0)
    if size == "target":
        return {g: spec.new_node_count for g in groups}
    snap = snapshot_from(context) or {}
    recorded = snap.get("nodegroups") or {}
    return {g: int((recorded.get(g) or {}).get("desiredSize", 0)) for g in groups}


class ClusterStateSensor(BaseSensorOperator):
    """Base: wait until one check is ``done``; ``failed`` is terminal.

    :param aws_conn_id: Airflow connection for EKS (templated)
    :param kubernetes_conn_id: Airflow connection for the cluster (templated)
    :param deferrable: wait in the triggerer, woken by watches, instead of a worker slot (the default);
        False pokes every ``poll_interval`` in a worker slot
    """

    template_fields: Sequence[str] = ("aws_conn_id", "kubernetes_conn_id")
    check_name: str = ""
    timeout_key: str = "rollout"
    xcom_key: str | None = None

    def __init__(self, *, aws_conn_id: str = "{{ params.aws_conn_id }}",
                 kubernetes_conn_id: str = "{{ params.kubernetes_conn_id }}", deferrable: bool = True,
                 **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 10)
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id
        self.deferrable = deferrable
        self._arguments: dict[str, Any] = {}
        self._region: str | None = None

    def arguments(self, spec: MigrationSpec, context: Any) -> dict[str, Any]:
        """The check's keyword arguments for this run."""
        return {}

    @cached_property
    def clients(self) -> Clients:
        return Clients(aws_conn_id=self.aws_conn_id, kubernetes_conn_id=self.kubernetes_conn_id,
                       region=self._region)

    def get_state(self) -> checks.Verdict:
        return checks.run(self.check_name, self.clients, **self._arguments)

    def _prepare(self, context: Any) -> MigrationSpec:
        spec = spec_from(context)
        self._region = spec.region
        self._arguments = self.arguments(spec, context)
        self.timeout = getattr(spec.timeouts, self.timeout_key)
        self.poke_interval = spec.timeouts.poll_interval
        return spec

    def execute(self, context: Any) -> Any:
        spec = self._prepare(context)
        if spec.dry_run:
            verdict = self._safe_state()
            self.log.info("[dry run] would wait (up to %ss) for %s; now: %s (%s)", self.timeout,
                          self.check_name, verdict.message, verdict.status)
            return None
        if self.deferrable:
            verdict = self._safe_state()
            if verdict.status != checks.WAITING:
                return self._finish(context, verdict)
            from cilium_migration.triggers import ClusterCheckTrigger

            self.log.info("%s: %s; deferring", self.check_name, verdict.message)
            self.defer(
                trigger=ClusterCheckTrigger(check=self.check_name, arguments=self._arguments,
                                            aws_conn_id=self.aws_conn_id,
                                            kubernetes_conn_id=self.kubernetes_conn_id, region=self._region,
                                            poll_interval=self.poke_interval,
                                            end_time=time.time() + float(self.timeout or 0)),
                method_name="execute_complete",
                timeout=timedelta(seconds=float(self.timeout or 0)),
            )
        return super().execute(context)

    def _safe_state(self) -> checks.Verdict:
        try:
            return self.get_state()
        except PermanentError as exc:
            return checks.Verdict(checks.FAILED, str(exc))
        except Exception as exc:
            if isinstance(exc, TemporaryError) or is_temporary_status(api_status(exc)):
                return checks.Verdict(checks.WAITING, f"temporary error: {exc}".splitlines()[0])
            raise

    def poke(self, context: Any) -> bool:
        verdict = self._safe_state()
        if verdict.status == checks.WAITING:
            self.log.info("%s: %s", self.check_name, verdict.message)
        if verdict.status == checks.FAILED:
            raise AirflowFailException(verdict.message if verdict.message.startswith("Terminal state")
                                       else f"Terminal state reached: {verdict.message}")
        if verdict.status == checks.DONE:
            self._finish(context, verdict)
            return True
        return False

    def _finish(self, context: Any, verdict: checks.Verdict) -> Any:
        if verdict.status == checks.FAILED:
            raise AirflowFailException(verdict.message)
        self.log.info("%s: %s", self.check_name, verdict.message)
        if self.xcom_key:
            context["ti"].xcom_push(key=self.xcom_key, value=verdict.data)
        return None

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        status = event.get("status")
        if status == "failed":
            raise AirflowFailException(event.get("message", "Terminal state reached"))
        if status == "timeout":
            raise AirflowFailException(f"{event.get('message')} (waited as long as the timeouts param allows)")
        if status != "success":
            raise TemporaryError(f"{self.check_name}: trigger error: {event.get('message')}")
        return self._finish(context, checks.Verdict(checks.DONE, event.get("message", ""),
                                                     event.get("data") or {}))


class EksNodegroupSizeSensor(ClusterStateSensor):
    """The node groups of ``role`` are ACTIVE at ``size`` (target: new_node_count, zero, snapshot)."""

    check_name = "nodegroups_at_size"
    timeout_key = "nodegroup"

    def __init__(self, *, role: str, size: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.role, self.size = role, size

    def arguments(self, spec: MigrationSpec, context: Any) -> dict[str, Any]:
        return {"cluster": spec.cluster_name, "sizes": sizes_for(spec, self.role, self.size, context)}


class NodesRegisteredSensor(ClusterStateSensor):
    """Exactly as many nodes of ``role``'s groups as their size (0: the nodes are gone)."""

    check_name = "nodes_registered"
    timeout_key = "nodegroup"

    def __init__(self, *, role: str, size: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.role, self.size = role, size

    def arguments(self, spec: MigrationSpec, context: Any) -> dict[str, Any]:
        sizes = sizes_for(spec, self.role, self.size, context)
        return {"nodegroups": sorted(sizes), "count": sum(sizes.values())}


class NodesReadySensor(ClusterStateSensor):
    """``role``'s nodes Ready; for the Cilium group also with the agent-not-ready taint removed."""

    check_name = "nodes_ready"
    timeout_key = "nodes_ready"

    def __init__(self, *, role: str, size: str = "target", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.role, self.size = role, size

    def arguments(self, spec: MigrationSpec, context: Any) -> dict[str, Any]:
        sizes = sizes_for(spec, self.role, self.size, context)
        return {"nodegroups": sorted(sizes), "count": sum(sizes.values()), "cilium": self.role == "new"}


class AllNodesReadySensor(ClusterStateSensor):
    """Every node in the cluster Ready, none with the agent-not-ready taint."""

    check_name = "all_nodes_ready"
    timeout_key = "nodes_ready"


class AwsNodeRolloutSensor(ClusterStateSensor):
    """aws-node's rollout done: observedGeneration, updatedNumberScheduled, numberAvailable == desired."""

    check_name = "aws_node_rolled_out"


class AwsNodeAbsentSensor(ClusterStateSensor):
    """No aws-node pod on the new nodes (one there fails at once: the fence did not hold)."""

    check_name = "aws_node_absent"

    def arguments(self, spec: MigrationSpec, context: Any) -> dict[str, Any]:
        return {"nodegroups": [spec.new_nodegroup]}


class CiliumRolloutSensor(ClusterStateSensor):
    """Every Cilium DaemonSet rolled out on the new nodes, its Deployments too, no Cilium pod Pending."""

    check_name = "cilium_rolled_out"

    def arguments(self, spec: MigrationSpec, context: Any) -> dict[str, Any]:
        return {"namespace": spec.cilium_namespace, "nodegroups": groups_for(spec, "new")}


class CiliumCniUninstallSensor(ClusterStateSensor):
    """Every Cilium agent on a node that stays runs with ``cni-uninstall: "true"`` (see the check)."""

    check_name = "cilium_cni_uninstall_armed"

    def arguments(self, spec: MigrationSpec, context: Any) -> dict[str, Any]:  # in place every node stays
        return {"namespace": spec.cilium_namespace, "nodegroups": [] if spec.in_place else [spec.new_nodegroup]}


class GoldpingerOnNodesSensor(ClusterStateSensor):
    """A Ready goldpinger DaemonSet pod on every node of ``role``'s groups."""

    check_name = "goldpinger_on_nodes"

    def __init__(self, *, role: str = "new", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.role = role

    def arguments(self, spec: MigrationSpec, context: Any) -> dict[str, Any]:
        return {"namespace": spec.goldpinger_namespace, "nodegroups": groups_for(spec, self.role)}


class GoldpingerOnCiliumSensor(ClusterStateSensor):
    """The goldpinger Deployment rolled out with all its pods on Cilium nodes (in place: on Cilium)."""

    check_name = "goldpinger_on_cilium"

    def arguments(self, spec: MigrationSpec, context: Any) -> dict[str, Any]:
        return {"namespace": spec.goldpinger_namespace, "per_pod": spec.in_place}


class PodsOnCniSensor(ClusterStateSensor):
    """In place: every pod that needs a CNI is on ``cni`` (``cilium`` before the old CNI goes, ``aws-cni``
    after a rollback); the pods left are named (bare ones need a human)."""

    check_name = "pods_on_cni"

    def __init__(self, *, cni: str = "cilium", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cni = cni

    def arguments(self, spec: MigrationSpec, context: Any) -> dict[str, Any]:
        return {"cni": self.cni}


class WorkloadsDrainedSensor(ClusterStateSensor):
    """No workload pods (DaemonSet and mirror pods excepted) left on ``role``'s nodes."""

    check_name = "workloads_drained"
    timeout_key = "eviction"

    def __init__(self, *, role: str = "old", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.role = role

    def arguments(self, spec: MigrationSpec, context: Any) -> dict[str, Any]:
        return {"nodegroups": groups_for(spec, self.role)}


class GoldpingerMeshSensor(ClusterStateSensor):
    """goldpinger's full mesh healthy (every instance, N x N fresh OK pings), verdict per CNI pair.

    Pushes the verdict as XCom ``mesh`` (the approval gates show it)."""

    check_name = "mesh_healthy"
    timeout_key = "mesh"
    xcom_key = "mesh"

    def arguments(self, spec: MigrationSpec, context: Any) -> dict[str, Any]:
        return {"namespace": spec.goldpinger_namespace, "tolerance_s": spec.timeouts.ping_tolerance,
                "started_at": datetime.now(UTC).isoformat(),
                "aws_nodegroups": [] if spec.in_place else list(spec.old_nodegroups), "per_pod_cni": spec.in_place}
