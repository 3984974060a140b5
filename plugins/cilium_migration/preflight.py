"""Preflight: read-only checks that the cluster is the runbook's starting point, and the snapshot
of everything the run will change (for rollback and the audit report).

Resuming is allowed: Cilium installed by an earlier run of this DAG (its Helm release exists) is fine;
Cilium installed any other way is not. The snapshot is normalised to the pre-migration state (aws-node
without our fence; the new group at size 0 when resuming), so rollback after a resume still restores
the original cluster.
"""

from __future__ import annotations

from typing import Any

from cilium_migration import aws_node, nodegroups, nodes
from cilium_migration.clients import Clients, items, read_or_none
from cilium_migration.errors import PermanentError
from cilium_migration.readiness import AGENT_NOT_READY_TAINT, name_of, node_cordoned
from cilium_migration.spec import MigrationSpec

CILIUM_DAEMONSET = "cilium"


def _has_agent_taint(nodegroup: dict[str, Any]) -> bool:
    return any(t.get("key") == AGENT_NOT_READY_TAINT for t in nodegroup.get("taints") or [])


def release_state(clients: Clients, spec: MigrationSpec) -> Any:
    from cilium_migration import cilium

    return cilium.release_state(clients.api_client, release=spec.release, namespace=spec.cilium_namespace)


def check(clients: Clients, spec: MigrationSpec) -> list[str]:
    """Every problem found (all of them, not just the first); ``PermanentError`` listing them if any.
    Returns what was verified, one line each."""
    ok: list[str] = []
    problems: list[str] = []
    nodegroups.describe_cluster(clients.eks, spec.cluster_name)
    ok.append(f"cluster {spec.cluster_name} exists in {spec.region}")
    for group in spec.old_nodegroups:
        try:
            ng = nodegroups.describe(clients.eks, spec.cluster_name, group)
        except PermanentError as exc:
            problems.append(str(exc))
            continue
        if _has_agent_taint(ng):
            problems.append(f"old node group {group} carries the {AGENT_NOT_READY_TAINT} taint: list it as "
                            "new_nodegroup, not in old_nodegroups")
        else:
            ok.append(f"old node group {group} exists, untainted")
    try:
        new = nodegroups.describe(clients.eks, spec.cluster_name, spec.new_nodegroup)
        if not _has_agent_taint(new):
            problems.append(f"new node group {spec.new_nodegroup} lacks the taint {AGENT_NOT_READY_TAINT}=true "
                            "(NoSchedule or NoExecute): add it so pods wait for Cilium (runbook eks-config)")
        else:
            ok.append(f"new node group {spec.new_nodegroup} exists with the {AGENT_NOT_READY_TAINT} taint")
    except PermanentError as exc:
        problems.append(str(exc))
    ds = aws_node.read(clients.apps)
    if ds is None:
        problems.append("DaemonSet kube-system/aws-node not found: this DAG migrates from the AWS VPC CNI")
    else:
        ok.append("aws-node DaemonSet exists")
    policies = items(clients.networking.list_network_policy_for_all_namespaces)
    if policies and not spec.allow_network_policies:
        listed = ", ".join(f"{p['metadata'].get('namespace')}/{name_of(p)}" for p in policies[:10])
        problems.append(f"{len(policies)} NetworkPolicy object(s) exist ({listed}): remove them before "
                        "migrating (runbook) or set allow_network_policies")
    else:
        ok.append(f"{len(policies)} NetworkPolicy object(s)"
                  + (" (allowed by allow_network_policies)" if policies else ""))
    cilium_ds = read_or_none(clients.apps.read_namespaced_daemon_set, CILIUM_DAEMONSET, spec.cilium_namespace)
    state = release_state(clients, spec)
    if cilium_ds is not None and state is None:
        problems.append(f"Cilium DaemonSet {spec.cilium_namespace}/{CILIUM_DAEMONSET} exists but not as "
                        f"Helm release {spec.release!r} of this DAG: remove it or migrate by hand")
    elif state is not None:
        ok.append(f"Cilium release {spec.release} revision {state.revision} ({state.status}) from an earlier "
                  "run: resuming")
    else:
        ok.append("Cilium absent")
    if problems:
        raise PermanentError("preflight failed:\n- " + "\n- ".join(problems))
    return ok


def snapshot(clients: Clients, spec: MigrationSpec) -> dict[str, Any]:
    """What rollback restores and the audit report shows: JSON-serialisable."""
    groups = {}
    for group in (*spec.old_nodegroups, spec.new_nodegroup):
        ng = nodegroups.describe(clients.eks, spec.cluster_name, group)
        groups[group] = dict(ng.get("scalingConfig") or {})
    resumed = release_state(clients, spec) is not None
    if resumed:
        groups[spec.new_nodegroup] = {**groups[spec.new_nodegroup], "desiredSize": 0}
    ds = aws_node.read(clients.apps)
    ds_snapshot = None
    if ds is not None:
        ds_snapshot = aws_node.snapshot(ds)
        template_spec = ds_snapshot["spec"]["template"]["spec"]
        template_spec["affinity"] = aws_node.unfenced_affinity(template_spec.get("affinity"))
    old_nodes = nodes.nodegroup_nodes(clients.core, spec.old_nodegroups)
    return {
        "cluster": spec.cluster_name,
        "resumed": resumed,
        "nodegroups": groups,
        "aws_node": ds_snapshot,
        "old_nodes": [name_of(n) for n in old_nodes],
        # cordoned before the migration; cordons this DAG made in an earlier run (hold) are not kept
        "old_nodes_cordoned": [name_of(n) for n in old_nodes
                               if node_cordoned(n) and not nodes.cordoned_by_us(n)],
        "new_nodes": [name_of(n) for n in nodes.nodegroup_nodes(clients.core, [spec.new_nodegroup])],
    }
