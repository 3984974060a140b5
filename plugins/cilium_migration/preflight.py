"""Preflight: read-only checks that the cluster is the runbook's starting point, and the snapshot
of everything the run will change (for rollback and the audit report).

The in-place strategy (``spec.in_place``) has no new node group: Cilium's nodes are the old groups'
(cilium-operator's identity is their node role), and every node must belong to one of them (Cilium will
run on every node, and only their nodes are replaced at the end).

Resuming is allowed: Cilium installed by an earlier run of this DAG (its Helm release exists) is fine;
Cilium installed any other way is not. The snapshot is normalised to the pre-migration state (aws-node
without our fence; the new group at size 0 when resuming), so rollback after a resume still restores
the original cluster.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cilium_migration import addons, aws_node, cluster_identity, nodegroups, nodes, prerequisites, progress
from cilium_migration.clients import Clients, items, read_or_none
from cilium_migration.errors import PermanentError
from cilium_migration.readiness import (
    AGENT_NOT_READY_TAINT,
    labels_of,
    name_of,
    node_cordoned,
    node_nodegroup,
)
from cilium_migration.spec import MigrationSpec

CILIUM_DAEMONSET = "cilium"
COMPUTE_TYPE_LABEL = "eks.amazonaws.com/compute-type"
LEFT_OUT_COMPUTE = frozenset({"fargate", "hybrid"})  # not on the VPC CNI's DaemonSet: reported, left out
NO_EXECUTE = "NO_EXECUTE"


def _has_agent_taint(nodegroup: dict[str, Any]) -> bool:
    return any(t.get("key") == AGENT_NOT_READY_TAINT for t in nodegroup.get("taints") or [])


def new_group_problem(spec: MigrationSpec, nodegroup: dict[str, Any]) -> str | None:
    """The new group must carry ``node.cilium.io/agent-not-ready`` with effect NoExecute (Cilium's EKS
    guide: pods that land before the agent is ready are evicted, not left unmanaged)."""
    taints = [t for t in nodegroup.get("taints") or [] if t.get("key") == AGENT_NOT_READY_TAINT]
    taint = next((t for t in taints if t.get("effect") == NO_EXECUTE), taints[0] if taints else None)
    fix = (f"aws eks update-nodegroup-config --cluster-name {spec.cluster_name} --nodegroup-name "
           f"{spec.new_nodegroup} --taints 'addOrUpdateTaints=[{{key={AGENT_NOT_READY_TAINT},value=true,"
           f"effect={NO_EXECUTE}}}]'")
    if taint is None:
        return (f"new node group {spec.new_nodegroup} lacks the taint {AGENT_NOT_READY_TAINT}=true:NoExecute, so "
                f"pods would start on its nodes before Cilium manages them; add it: {fix}")
    if taint.get("effect") != NO_EXECUTE:
        return (f"new node group {spec.new_nodegroup} has the taint {AGENT_NOT_READY_TAINT} with effect "
                f"{taint.get('effect')}; Cilium's EKS guide requires NoExecute (pods that land before the agent "
                f"is ready are evicted): {fix}")
    return None


def unaccounted_nodes(spec: MigrationSpec, all_nodes: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(nodes in no listed node group, Fargate and hybrid nodes left out by rule), each as 'name (why)'."""
    listed = set(spec.old_nodegroups) if spec.in_place else {*spec.old_nodegroups, spec.new_nodegroup}
    unknown, left_out = [], []
    for node in all_nodes:
        compute = labels_of(node).get(COMPUTE_TYPE_LABEL, "")
        group = node_nodegroup(node)
        if compute in LEFT_OUT_COMPUTE:
            left_out.append(f"{name_of(node)} ({compute})")
        elif group not in listed:
            karpenter = labels_of(node).get("karpenter.sh/nodepool")
            where = (f"node group {group}" if group else f"Karpenter NodePool {karpenter}" if karpenter
                     else "no managed node group")
            unknown.append(f"{name_of(node)} ({where})")
    return sorted(unknown), sorted(left_out)


def release_state(clients: Clients, spec: MigrationSpec) -> Any:
    from cilium_migration import cilium

    return cilium.release_state(clients.api_client, release=spec.release, namespace=spec.cilium_namespace)


def check(clients: Clients, spec: MigrationSpec) -> list[str]:
    """Every problem found (all of them, not just the first); ``PermanentError`` listing them if any.
    Returns what was verified, one line each."""
    ok: list[str] = []
    problems: list[str] = []
    cluster = nodegroups.describe_cluster(clients.eks, spec.cluster_name)
    ok.append(f"cluster {spec.cluster_name} exists in {spec.region}")
    if spec.window is not None:  # validated with the params (MigrationSpec): a bad one never gets here
        ok.append(f"disruptive steps start only inside the {spec.window.describe(datetime.now(UTC))}")
    wrong = cluster_identity.mismatch(clients.api_client, cluster)
    if wrong:  # nothing else is worth checking on another cluster
        raise PermanentError(f"preflight failed:\n- {wrong}")
    ok.append(f"the Kubernetes connection reaches {spec.cluster_name}'s API server ({cluster.get('endpoint')})")
    old_groups: list[dict[str, Any]] = []
    for group in spec.old_nodegroups:
        try:
            ng = nodegroups.describe(clients.eks, spec.cluster_name, group)
        except PermanentError as exc:
            problems.append(str(exc))
            continue
        old_groups.append(ng)
        if _has_agent_taint(ng):
            problems.append(f"old node group {group} carries the {AGENT_NOT_READY_TAINT} taint: list it as "
                            "new_nodegroup, not in old_nodegroups" if not spec.in_place else
                            f"node group {group} carries the {AGENT_NOT_READY_TAINT} taint: the in-place "
                            "strategy migrates groups served by the AWS VPC CNI; remove it from old_nodegroups")
        else:
            ok.append(f"old node group {group} exists, untainted")
    new: dict[str, Any] | None = None
    if spec.in_place:  # cilium-operator runs on the old groups' nodes, with their node role
        new = old_groups[0] if old_groups else None
    else:
        try:
            new = nodegroups.describe(clients.eks, spec.cluster_name, spec.new_nodegroup)
            taint_problem = new_group_problem(spec, new)
            if taint_problem:
                problems.append(taint_problem)
            else:
                ok.append(f"new node group {spec.new_nodegroup} exists with the {AGENT_NOT_READY_TAINT}:NoExecute "
                          "taint")
        except PermanentError as exc:
            problems.append(str(exc))
    if other := progress.read(clients.core, spec.cilium_namespace).other_strategy(spec.in_place):
        problems.append(other)
    unknown, left_out = unaccounted_nodes(spec, nodes.list_nodes(clients.core))
    if unknown:
        effect = ("Cilium would run on them beside aws-node but they would never be replaced" if spec.in_place
                  else "the fence would take aws-node off them and Cilium would take them over unplanned")
        problems.append(f"{len(unknown)} node(s) belong to no listed node group: {', '.join(unknown[:20])}; the "
                        f"{effect}: list their groups in old_nodegroups, or remove those nodes first")
    else:
        ok.append("every node belongs to a listed node group")
    if left_out:
        ok.append(f"left out by rule (Fargate and hybrid nodes do not run aws-node): {', '.join(left_out)}")
    ds = aws_node.read(clients.apps)
    if ds is None:
        problems.append("DaemonSet kube-system/aws-node not found: this DAG migrates from the AWS VPC CNI")
    else:
        ok.append("aws-node DaemonSet exists")
    verified, refused = prerequisites.check(clients, spec, aws_node=ds, new_nodegroup=new)  # ENI, autoscalers
    ok.extend(verified)
    problems.extend(refused)
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
    for group in spec.old_nodegroups if spec.in_place else (*spec.old_nodegroups, spec.new_nodegroup):
        ng = nodegroups.describe(clients.eks, spec.cluster_name, group)
        groups[group] = dict(ng.get("scalingConfig") or {})
    resumed = release_state(clients, spec) is not None
    if resumed and not spec.in_place:
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
        "vpc_cni_addon": addons.snapshot(addons.describe(clients.eks, spec.cluster_name)),  # None: self-managed
        "old_nodes": [name_of(n) for n in old_nodes],
        # cordoned before the migration; cordons this DAG made in an earlier run (hold) are not kept
        "old_nodes_cordoned": [name_of(n) for n in old_nodes
                               if node_cordoned(n) and not nodes.cordoned_by_us(n)],
        "new_nodes": [] if spec.in_place else [name_of(n) for n in nodes.nodegroup_nodes(clients.core,
                                                                                          [spec.new_nodegroup])],
    }
