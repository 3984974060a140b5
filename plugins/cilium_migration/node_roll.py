"""Rolling every node of the in-place strategy's node groups: replaced one at a time, so no iptables rule or
interface of the AWS VPC CNI survives on a node Cilium serves.

Rules, per node group (in ``old_nodegroups`` order), after aws-node is gone:
- The nodes to replace are the group's nodes of the preflight snapshot (``old_nodes``) still there; a node
  that registered later (a surge or a replacement) came up with Cilium only and is never replaced.
- Surge first: the group's desired size goes one above the snapshot's (its max raised as far as needed),
  so capacity never drops while a node is replaced. Then, while the group has a node to replace and all
  its nodes are Ready: cordon that node, evict its workload pods (PodDisruptionBudgets respected, as in
  the cutover), and terminate its EC2 instance (``ec2:TerminateInstances``). The Auto Scaling group keeps
  the desired size, so it launches a clean replacement; the next node is taken once the old one is gone
  and the group is Ready at its desired size again.
- Last, the group goes back to the snapshot's scalingConfig: EKS removes one node (all are clean by then).
- ``next_action`` decides from the cluster alone, so a retry or a cleared task goes on where the last try
  stopped and a finished roll does nothing. Every wait is a check the operator defers on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cilium_migration.audit import Change
from cilium_migration.errors import Kind, PermanentError, TemporaryError, classify, error_code, error_message
from cilium_migration.readiness import name_of, node_cordoned, node_ready

Obj = dict[str, Any]

SURGE, WAIT, REPLACE, SETTLE, DONE = "surge", "wait", "replace", "settle", "done"
IAM_ACTIONS = frozenset({"ec2:TerminateInstances"})  # what only the roll calls (deploy/iam-policy.json)


@dataclass(frozen=True)
class Action:
    """What the roll does next in one group: ``surge`` (scale to ``size``), ``wait`` (for ``check`` with
    ``arguments``), ``replace`` (``node``), ``settle`` (back to the snapshot's scalingConfig) or ``done``."""

    kind: str
    group: str = ""
    message: str = ""
    node: str = ""
    size: int = 0
    check: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)


def instance_id(node: Obj) -> str:
    """The EC2 instance id of a node, from ``spec.providerID`` (``aws:///<zone>/<instance id>``)."""
    provider = str((node.get("spec") or {}).get("providerID") or "")
    if not provider.startswith("aws://") or not provider.rsplit("/", 1)[-1].startswith("i-"):
        raise PermanentError(f"node {name_of(node)} has no EC2 providerID ({provider!r}): it cannot be replaced "
                             "through its node group; replace it by hand, then clear this task")
    return provider.rsplit("/", 1)[-1]


def next_action(group: str, scaling: Mapping[str, Any], snapshot_scaling: Mapping[str, Any],
                group_nodes: Sequence[Obj], old_nodes: Iterable[str]) -> Action:
    """The next step of ``group``'s roll, from its EKS scalingConfig now and at the snapshot, its nodes
    now, and the names of the nodes it had at the snapshot."""
    base = int(snapshot_scaling.get("desiredSize", 0))
    desired = int(scaling.get("desiredSize", 0))
    old = set(old_nodes)
    left = sorted(name_of(n) for n in group_nodes if name_of(n) in old)
    if base == 0:
        return Action(DONE, group, f"{group} had no nodes at the snapshot: nothing to replace")
    if not left:
        if desired != base or int(scaling.get("maxSize", 0)) != int(snapshot_scaling.get("maxSize", 0)):
            return Action(SETTLE, group, f"{group}: every node replaced; back to {base} node(s)", size=base)
        if len(group_nodes) != base or not all(node_ready(n) for n in group_nodes):
            return _wait_ready(group, base, "the surge node to go")
        return Action(DONE, group, f"{group}: all {base} node(s) replaced and Ready")
    if desired < base + 1:
        return Action(SURGE, group, f"{group}: one node above {base} while nodes are replaced", size=base + 1)
    leaving = sorted(name_of(n) for n in group_nodes if name_of(n) in old and _terminating(n))
    if leaving or len(group_nodes) != desired or not all(node_ready(n) for n in group_nodes):
        return _wait_ready(group, desired, "a replacement", gone=leaving)
    node = left[0]
    return Action(REPLACE, group, f"{group}: replacing {node} ({len(left)} of its snapshot's node(s) left)",
                  node=node)


def _terminating(node: Obj) -> bool:
    """Cordoned by the roll and its instance terminated (the replacement is on its way)."""
    return node_cordoned(node) and (node.get("metadata") or {}).get("annotations", {}).get(TERMINATED_ANNOTATION) \
        is not None


TERMINATED_ANNOTATION = "cilium-migration.io/instance-terminated"


def _wait_ready(group: str, count: int, what: str, gone: Sequence[str] = ()) -> Action:
    """Wait (check ``nodes_replaced``) until the ``gone`` nodes are gone and ``count`` nodes are Ready."""
    return Action(WAIT, group, f"{group}: waiting for {what}: {count} node(s) Ready"
                  + (f", {', '.join(gone)} gone" if gone else ""), check="nodes_replaced",
                  arguments={"nodegroups": [group], "count": count, "gone": list(gone)})


def terminate(ec2: Any, core: Any, node: Obj, *, dry_run: bool = False) -> list[Change]:
    """Mark the node (annotation ``TERMINATED_ANNOTATION``: the roll waits for it to go), then terminate its
    EC2 instance; an instance already gone counts as terminated."""
    instance = instance_id(node)
    name = name_of(node)
    changes: list[Change] = []
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    if annotations.get(TERMINATED_ANNOTATION) != instance:
        body = {"metadata": {"annotations": {TERMINATED_ANNOTATION: instance}}}
        core.patch_node(name, body, dry_run="All" if dry_run else None, _preload_content=False)
        changes.append(Change("annotate", "Node", name, None, before={TERMINATED_ANNOTATION: None},
                              after={TERMINATED_ANNOTATION: instance}, dry_run=dry_run))
    if dry_run:
        return changes
    try:
        ec2.terminate_instances(InstanceIds=[instance])
    except Exception as exc:
        code = error_code(exc) or type(exc).__name__
        if code == "InvalidInstanceID.NotFound":  # gone already: what terminating wanted
            return changes
        kind = classify(exc)
        if kind is Kind.TEMPORARY:
            raise TemporaryError(f"terminate {instance} ({name}): {code}; retrying later helps") from exc
        if kind is Kind.PERMANENT:
            raise PermanentError(f"terminate {instance} ({name}) refused by EC2: {code}: {error_message(exc)}: "
                                 "grant ec2:TerminateInstances on the node groups' instances "
                                 "(deploy/iam-policy.json)") from exc
        raise
    changes.append(Change("terminate", "Instance", instance, None, before={"node": name, "state": "running"},
                          after={"state": "shutting-down"}, dry_run=False))
    return changes
