"""Live migration of an EKS cluster from the AWS VPC CNI to Cilium on the same nodes (the runbook's in-place
strategy), for clusters that cannot get a second set of nodes.

Phases, as TaskGroups in runbook order: preflight -> baseline -> cilium_beside -> approve_restarts ->
restart_pods -> approve_removal -> remove_old_cni, then the audit report. Cilium is installed beside
aws-node on every node (no fence; ``cni.exclusive=false``: its CNI configuration comes first, so every new
pod is Cilium's while running pods keep the AWS VPC CNI), with the unmanaged-pod watcher off. goldpinger's
Deployment is restarted onto Cilium while its DaemonSet stays on the AWS VPC CNI, so the mesh gate sees
the cross-CNI paths on one node and across nodes. A human approves the pod restarts (proceed / roll
back); every workload with a pod on the old CNI is then rollout-restarted namespace by namespace
(``restart_namespaces`` first), and a gate checks that no pod is left on the old CNI. A human approves
removing the old CNI (proceed / hold / roll back): aws-node goes, every node is replaced through its node
group one at a time (no iptables rule of the old CNI survives), and the watcher is turned on.

Rollback runs after a rejection or when any gate fails: node groups back to the snapshot, aws-node back
(if it was deleted) and rolled out, ``cni.uninstall=true`` armed, Cilium uninstalled, then every workload
with a pod on Cilium restarted back onto the AWS VPC CNI. Maintenance windows, re-runs that never go
backwards, the change ledger and the report work as in ``eks_cilium_migration``.

Wiring only: the logic lives in ``plugins/cilium_migration``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup, TriggerRule

from cilium_migration.approvals import REMOVAL_CHANGES, RESTART_CHANGES
from cilium_migration.operators import (
    AwsNodeDeleteOperator,
    AwsNodeRestoreOperator,
    CiliumCniUninstallOperator,
    CiliumInstallOperator,
    CiliumUninstallOperator,
    EksNodegroupScaleOperator,
    GoldpingerDeployOperator,
    GoldpingerRestartOperator,
    MigrationAuditReportOperator,
    NodeCordonOperator,
    NodeRollOperator,
    PreflightCheckOperator,
    PreflightSnapshotOperator,
    RollbackStartOperator,
    WorkloadRestartOperator,
)
from cilium_migration.params import dag_params
from cilium_migration.retry_policy import TASK_RETRIES
from cilium_migration.sensors import (
    AllNodesReadySensor,
    AwsNodeRolloutSensor,
    CiliumCniUninstallSensor,
    CiliumRolloutSensor,
    GoldpingerMeshSensor,
    GoldpingerOnCiliumSensor,
    NodesReadySensor,
    PodsOnCniSensor,
)
from cilium_migration.spec import IN_PLACE
from cilium_migration.wiring import approval_gate, wire_migration

with DAG(
    dag_id="eks_cilium_migration_in_place",
    description="Migrate an EKS cluster from the AWS VPC CNI to Cilium in place: same nodes, pods restarted",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["eks", "cilium", "cni-migration", "in-place"],
    params=dag_params(IN_PLACE),
    default_args={"owner": "platform", **TASK_RETRIES},  # backoff; permanent errors fail at once
    doc_md=__doc__,
) as dag:
    with TaskGroup("preflight"):
        preflight_checks = PreflightCheckOperator(task_id="checks")
        snapshot = PreflightSnapshotOperator(task_id="snapshot")

    with TaskGroup("baseline"):
        deploy_goldpinger = GoldpingerDeployOperator(task_id="deploy_goldpinger")
        baseline_mesh = GoldpingerMeshSensor(task_id="mesh_healthy")

    with TaskGroup("cilium_beside"):
        install_cilium = CiliumInstallOperator(task_id="install_cilium")
        cilium_rolled_out = CiliumRolloutSensor(task_id="cilium_rolled_out")  # an agent Ready on every node
        aws_node_still_runs = AwsNodeRolloutSensor(task_id="aws_node_still_runs")
        restart_goldpinger = GoldpingerRestartOperator(task_id="restart_goldpinger")  # the Deployment: Cilium
        goldpinger_on_cilium = GoldpingerOnCiliumSensor(task_id="goldpinger_on_cilium")
        both_cni_mesh = GoldpingerMeshSensor(task_id="mesh_healthy")

    with TaskGroup("approve_restarts"):
        approve_restarts_gate = approval_gate(
            "approve_restarts", proceed_to="restart_pods.restart_workloads",
            subject="Restart the pods of {{ params.cluster_name }} onto Cilium?",
            evidence_title="Cilium runs beside the AWS VPC CNI: restart the pods onto it?",
            mesh_task_id="cilium_beside.mesh_healthy", changes=RESTART_CHANGES)
        restarts_rejected = EmptyOperator(task_id="rejected")  # noqa: AIR001 (one name per group)

    with TaskGroup("restart_pods"):
        restart_workloads = WorkloadRestartOperator(task_id="restart_workloads")
        no_pod_on_old_cni = PodsOnCniSensor(task_id="no_pod_on_old_cni")
        restarted_mesh = GoldpingerMeshSensor(task_id="mesh_healthy")

    with TaskGroup("approve_removal"):
        approve_removal_gate = approval_gate(  # a timeout holds: the run ends with every pod on Cilium
            "approve_removal", proceed_to="remove_old_cni.delete_aws_node", can_hold=True,
            subject="Remove the AWS VPC CNI from {{ params.cluster_name }} and replace its nodes?",
            evidence_title="Every pod runs on Cilium: remove the old CNI?",
            mesh_task_id="restart_pods.mesh_healthy", changes=REMOVAL_CHANGES)
        hold = EmptyOperator(task_id="hold")
        removal_rejected = EmptyOperator(task_id="rejected")  # noqa: AIR001

    with TaskGroup("remove_old_cni"):
        delete_aws_node = AwsNodeDeleteOperator(task_id="delete_aws_node")
        roll_nodes = NodeRollOperator(task_id="roll_nodes")
        enable_watcher = CiliumInstallOperator(task_id="enable_unmanaged_pod_watcher", unmanaged_pod_restart=True)
        all_nodes_ready = AllNodesReadySensor(task_id="all_nodes_ready")
        final_mesh = GoldpingerMeshSensor(task_id="final_mesh_healthy")

    with TaskGroup("rollback"):
        on_gate_failure = EmptyOperator(task_id="on_gate_failure", trigger_rule=TriggerRule.ONE_FAILED)
        rollback_start = RollbackStartOperator(task_id="start", trigger_rule=TriggerRule.ONE_SUCCESS)
        restore_groups = EksNodegroupScaleOperator(task_id="restore_nodegroups", role="old", size="snapshot")
        nodes_ready = NodesReadySensor(task_id="nodes_ready", role="old", size="snapshot")
        uncordon = NodeCordonOperator(task_id="uncordon_nodes", role="old", cordon=False)
        ensure_aws_node = AwsNodeRestoreOperator(task_id="ensure_aws_node")
        aws_node_back = AwsNodeRolloutSensor(task_id="aws_node_rolled_out")
        arm_cni_uninstall = CiliumCniUninstallOperator(task_id="arm_cni_uninstall")
        cni_uninstall_armed = CiliumCniUninstallSensor(task_id="cni_uninstall_armed")
        uninstall_cilium = CiliumUninstallOperator(task_id="uninstall_cilium")
        restart_back = WorkloadRestartOperator(task_id="restart_workloads_back", onto="aws-cni")
        no_pod_on_cilium = PodsOnCniSensor(task_id="no_pod_on_cilium", cni="aws-cni")
        ensure_goldpinger = GoldpingerDeployOperator(task_id="ensure_goldpinger")  # a failed baseline has none
        rollback_mesh = GoldpingerMeshSensor(task_id="mesh_healthy")

    audit_report = MigrationAuditReportOperator(task_id="audit_report", trigger_rule=TriggerRule.ALL_DONE)

    forward = [
        preflight_checks, snapshot,
        deploy_goldpinger, baseline_mesh,
        install_cilium, cilium_rolled_out, aws_node_still_runs, restart_goldpinger, goldpinger_on_cilium,
        both_cni_mesh,
    ]
    restart_steps = [restart_workloads, no_pod_on_old_cni, restarted_mesh]
    removal_steps = [delete_aws_node, roll_nodes, enable_watcher, all_nodes_ready, final_mesh]
    rollback_steps = [rollback_start, restore_groups, nodes_ready, uncordon, ensure_aws_node, aws_node_back,
                      arm_cni_uninstall, cni_uninstall_armed, uninstall_cilium, restart_back, no_pod_on_cilium,
                      ensure_goldpinger, rollback_mesh]

    # in runbook order through both gates; rollback after a failed step or a rejection; the audit report
    # whatever happened (the rules: cilium_migration.wiring)
    wire_migration(forward=forward, first_gate=approve_restarts_gate, first_rejected=restarts_rejected,
                   middle=restart_steps, second_gate=approve_removal_gate, hold=hold,
                   second_rejected=removal_rejected, last=removal_steps, on_gate_failure=on_gate_failure,
                   rollback=rollback_steps, audit_report=audit_report)
