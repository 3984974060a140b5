"""Live migration of an EKS cluster from the AWS VPC CNI to Cilium (the runbook's node-pool strategy).

Phases, as TaskGroups in runbook order: preflight -> baseline -> fence_old_cni -> cilium_nodes ->
approve_cutover -> cutover -> approve_decommission -> decommission, then the audit report. A human
approves cutover (proceed / roll back) and decommission (proceed / hold / roll back). With a maintenance
window (params ``window_cron``, ``window_minutes``, ``window_timezone``) the disruptive steps and a
"proceed" wait, deferred, for the window; ``eks_cilium_migration_scheduled`` triggers runs at its start.
"hold" ends the run successfully with the cluster left in the cutover state (workloads on Cilium nodes,
old nodes cordoned, aws-node and the old node groups kept); a later run resumes from there.

Rollback runs after a rejection or when any gate fails: it restores the preflight snapshot (node group
sizes, cordons), moves workloads back, uninstalls Cilium (``cni.uninstall=true`` first, so no agent leaves
its CNI configuration on a node), and only once the Cilium nodes are gone
restores aws-node's affinity (a deleted aws-node comes back fenced first, so it never runs on a Cilium
node). The ``cni=aws-cni`` node labels and goldpinger stay (harmless without the fence). The audit report runs in every case and fails
the run when a task failed, so a run rolled back after a failure never shows as a success; a run rolled
back after a human's "roll back" succeeds, with that outcome in its report.

Wiring only: the logic lives in ``plugins/cilium_migration``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup, TriggerRule

from cilium_migration.approvals import CUTOVER_CHANGES, DECOMMISSION_CHANGES
from cilium_migration.operators import (
    AwsNodeDeleteOperator,
    AwsNodeFenceOperator,
    AwsNodeRestoreOperator,
    CiliumCniUninstallOperator,
    CiliumInstallOperator,
    CiliumUninstallOperator,
    EksNodegroupScaleOperator,
    GoldpingerDeployOperator,
    GoldpingerRestartOperator,
    MigrationAuditReportOperator,
    NodeCordonOperator,
    NodeLabelOperator,
    PreflightCheckOperator,
    PreflightSnapshotOperator,
    RollbackStartOperator,
    WorkloadMoveOperator,
)
from cilium_migration.params import dag_params
from cilium_migration.retry_policy import TASK_RETRIES
from cilium_migration.sensors import (
    AllNodesReadySensor,
    AwsNodeAbsentSensor,
    AwsNodeRolloutSensor,
    CiliumCniUninstallSensor,
    CiliumRolloutSensor,
    EksNodegroupSizeSensor,
    GoldpingerMeshSensor,
    GoldpingerOnCiliumSensor,
    GoldpingerOnNodesSensor,
    NodesReadySensor,
    NodesRegisteredSensor,
    WorkloadsDrainedSensor,
)
from cilium_migration.wiring import approval_gate, wire_migration

with DAG(
    dag_id="eks_cilium_migration",
    description="Migrate an EKS cluster from the AWS VPC CNI to Cilium, node pool by node pool",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["eks", "cilium", "cni-migration"],
    params=dag_params(),
    default_args={"owner": "platform", **TASK_RETRIES},  # backoff; permanent errors fail at once
    doc_md=__doc__,
) as dag:
    with TaskGroup("preflight"):
        preflight_checks = PreflightCheckOperator(task_id="checks")
        snapshot = PreflightSnapshotOperator(task_id="snapshot")

    with TaskGroup("baseline"):
        deploy_goldpinger = GoldpingerDeployOperator(task_id="deploy_goldpinger")
        baseline_mesh = GoldpingerMeshSensor(task_id="mesh_healthy")

    with TaskGroup("fence_old_cni"):
        label_old_nodes = NodeLabelOperator(task_id="label_old_nodes")
        fence_aws_node = AwsNodeFenceOperator(task_id="fence_aws_node")
        aws_node_rolled_out = AwsNodeRolloutSensor(task_id="aws_node_rolled_out")
        restart_goldpinger = GoldpingerRestartOperator(task_id="restart_goldpinger")
        fenced_mesh = GoldpingerMeshSensor(task_id="mesh_healthy")

    with TaskGroup("cilium_nodes"):
        scale_new = EksNodegroupScaleOperator(task_id="scale_new_nodegroup", role="new", size="target")
        new_nodegroup_active = EksNodegroupSizeSensor(task_id="new_nodegroup_active", role="new",
                                                      size="target")
        new_nodes_registered = NodesRegisteredSensor(task_id="new_nodes_registered", role="new",
                                                     size="target")
        aws_node_absent = AwsNodeAbsentSensor(task_id="aws_node_absent_on_new_nodes")
        install_cilium = CiliumInstallOperator(task_id="install_cilium")
        new_nodes_ready = NodesReadySensor(task_id="new_nodes_ready", role="new")
        cilium_rolled_out = CiliumRolloutSensor(task_id="cilium_rolled_out")
        goldpinger_on_new = GoldpingerOnNodesSensor(task_id="goldpinger_on_new_nodes", role="new")
        both_cni_mesh = GoldpingerMeshSensor(task_id="mesh_healthy")

    with TaskGroup("approve_cutover"):
        approve_cutover_gate = approval_gate(
            "approve_cutover", proceed_to="cutover.cordon_old_nodes",
            subject="Cut over {{ params.cluster_name }} to Cilium?", evidence_title="Cilium nodes are up: cut over?",
            mesh_task_id="cilium_nodes.mesh_healthy", changes=CUTOVER_CHANGES)
        cutover_rejected = EmptyOperator(task_id="rejected")  # noqa: AIR001 (one name per group)

    with TaskGroup("cutover"):
        cordon_old = NodeCordonOperator(task_id="cordon_old_nodes", role="old", cordon=True)
        restart_goldpinger_cutover = GoldpingerRestartOperator(task_id="restart_goldpinger")
        goldpinger_on_cilium = GoldpingerOnCiliumSensor(task_id="goldpinger_on_cilium_nodes")
        move_workloads = WorkloadMoveOperator(task_id="move_workloads", role="old")
        old_nodes_drained = WorkloadsDrainedSensor(task_id="old_nodes_drained", role="old")
        cutover_mesh = GoldpingerMeshSensor(task_id="mesh_healthy")

    with TaskGroup("approve_decommission"):
        approve_decommission_gate = approval_gate(  # a timeout holds: the run ends in the cutover state
            "approve_decommission", proceed_to="decommission.delete_aws_node", can_hold=True,
            subject="Decommission the AWS VPC CNI on {{ params.cluster_name }}?",
            evidence_title="Workloads run on Cilium: decommission the old CNI?",
            mesh_task_id="cutover.mesh_healthy", changes=DECOMMISSION_CHANGES)
        hold = EmptyOperator(task_id="hold")
        decommission_rejected = EmptyOperator(task_id="rejected")  # noqa: AIR001

    with TaskGroup("decommission"):
        delete_aws_node = AwsNodeDeleteOperator(task_id="delete_aws_node")
        scale_old_to_zero = EksNodegroupScaleOperator(task_id="scale_old_nodegroups", role="old", size="zero")
        old_nodegroups_at_zero = EksNodegroupSizeSensor(task_id="old_nodegroups_at_zero", role="old",
                                                        size="zero")
        old_nodes_gone = NodesRegisteredSensor(task_id="old_nodes_gone", role="old", size="zero")
        enable_watcher = CiliumInstallOperator(task_id="enable_unmanaged_pod_watcher",
                                               unmanaged_pod_restart=True)
        all_nodes_ready = AllNodesReadySensor(task_id="all_nodes_ready")
        final_mesh = GoldpingerMeshSensor(task_id="final_mesh_healthy")

    with TaskGroup("rollback"):
        on_gate_failure = EmptyOperator(task_id="on_gate_failure", trigger_rule=TriggerRule.ONE_FAILED)
        rollback_start = RollbackStartOperator(task_id="start", trigger_rule=TriggerRule.ONE_SUCCESS)
        ensure_aws_node = AwsNodeRestoreOperator(task_id="ensure_aws_node", fenced=True)
        restore_old = EksNodegroupScaleOperator(task_id="restore_old_nodegroups", role="old", size="snapshot")
        old_nodes_ready = NodesReadySensor(task_id="old_nodes_ready", role="old", size="snapshot")
        uncordon_old = NodeCordonOperator(task_id="uncordon_old_nodes", role="old", cordon=False)
        cordon_new = NodeCordonOperator(task_id="cordon_new_nodes", role="new", cordon=True)
        move_back = WorkloadMoveOperator(task_id="move_workloads_back", role="new")
        new_nodes_drained = WorkloadsDrainedSensor(task_id="new_nodes_drained", role="new")
        arm_cni_uninstall = CiliumCniUninstallOperator(task_id="arm_cni_uninstall")
        cni_uninstall_armed = CiliumCniUninstallSensor(task_id="cni_uninstall_armed")
        uninstall_cilium = CiliumUninstallOperator(task_id="uninstall_cilium")
        restore_new = EksNodegroupScaleOperator(task_id="restore_new_nodegroup", role="new", size="snapshot")
        new_nodes_gone = NodesRegisteredSensor(task_id="new_nodes_gone", role="new", size="snapshot")
        restore_aws_node = AwsNodeRestoreOperator(task_id="restore_aws_node")  # the fence goes last
        ensure_goldpinger = GoldpingerDeployOperator(task_id="ensure_goldpinger")  # a failed baseline has none
        rollback_mesh = GoldpingerMeshSensor(task_id="mesh_healthy")

    audit_report = MigrationAuditReportOperator(task_id="audit_report", trigger_rule=TriggerRule.ALL_DONE)

    forward = [
        preflight_checks, snapshot,
        deploy_goldpinger, baseline_mesh,
        label_old_nodes, fence_aws_node, aws_node_rolled_out, restart_goldpinger, fenced_mesh,
        scale_new, new_nodegroup_active, new_nodes_registered, aws_node_absent, install_cilium,
        new_nodes_ready, cilium_rolled_out, goldpinger_on_new, both_cni_mesh,
    ]
    cutover_steps = [cordon_old, restart_goldpinger_cutover, goldpinger_on_cilium, move_workloads,
                     old_nodes_drained, cutover_mesh]
    decommission_steps = [delete_aws_node, scale_old_to_zero, old_nodegroups_at_zero, old_nodes_gone,
                          enable_watcher, all_nodes_ready, final_mesh]
    rollback_steps = [rollback_start, ensure_aws_node, restore_old, old_nodes_ready, uncordon_old, cordon_new,
                      move_back, new_nodes_drained, arm_cni_uninstall, cni_uninstall_armed, uninstall_cilium,
                      restore_new, new_nodes_gone, restore_aws_node, ensure_goldpinger, rollback_mesh]

    # in runbook order through both gates; rollback after a failed step or a rejection; the audit report
    # whatever happened (the rules: cilium_migration.wiring)
    wire_migration(forward=forward, first_gate=approve_cutover_gate, first_rejected=cutover_rejected,
                   middle=cutover_steps, second_gate=approve_decommission_gate, hold=hold,
                   second_rejected=decommission_rejected, last=decommission_steps, on_gate_failure=on_gate_failure,
                   rollback=rollback_steps, audit_report=audit_report)
