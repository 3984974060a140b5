"""Nodes: find them by node group, label, cordon and uncordon them; every write is a ``Change``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cilium_migration.audit import Change
from cilium_migration.clients import items
from cilium_migration.readiness import NODEGROUP_LABEL, labels_of, name_of, node_cordoned

Obj = dict[str, Any]

CORDONED_BY = "cilium-migration.io/cordoned"  # marks the cordons this DAG made (a resumed run sees them)


def list_nodes(core: Any, *, label_selector: str | None = None) -> list[Obj]:
    kwargs = {"label_selector": label_selector} if label_selector else {}
    return sorted(items(core.list_node, **kwargs), key=name_of)


def nodegroup_selector(groups: Iterable[str]) -> str:
    return f"{NODEGROUP_LABEL} in ({','.join(sorted(groups))})"


def nodegroup_nodes(core: Any, groups: Iterable[str]) -> list[Obj]:
    """Nodes of these EKS managed node groups (by their ``eks.amazonaws.com/nodegroup`` label)."""
    groups = list(groups)
    return list_nodes(core, label_selector=nodegroup_selector(groups)) if groups else []


def label(core: Any, nodes: Iterable[Obj], key: str, value: str, *, dry_run: bool = False) -> list[Change]:
    """Set ``key=value`` on each node that does not carry it yet.

    Only the nodes given are labelled, not ``--all`` as the runbook says: a node that joins another
    group meanwhile (a Cilium node, say) must never be labelled ``cni=aws-cni``.
    """
    changes = []
    for node in nodes:
        before = labels_of(node).get(key)
        if before == value:
            continue
        core.patch_node(name_of(node), {"metadata": {"labels": {key: value}}},
                        dry_run="All" if dry_run else None, _preload_content=False)
        changes.append(Change("label", "Node", name_of(node), before={key: before}, after={key: value},
                              dry_run=dry_run))
    return changes


def cordoned_by_us(node: Obj) -> bool:
    """Whether this DAG cordoned the node (and so a rollback may uncordon it)."""
    return CORDONED_BY in (node.get("metadata", {}).get("annotations") or {})


def set_cordoned(core: Any, nodes: Iterable[Obj], cordoned: bool, *, dry_run: bool = False) -> list[Change]:
    """Cordon (``spec.unschedulable: true``) or uncordon the nodes whose state differs.

    A cordon made here is marked with the ``CORDONED_BY`` annotation, removed again on uncordon, so a
    later run's snapshot can tell the operator's own cordons from ours.
    """
    changes = []
    for node in nodes:
        if node_cordoned(node) == cordoned:
            continue
        mark = {CORDONED_BY: "true" if cordoned else None}
        core.patch_node(name_of(node), {"metadata": {"annotations": mark}, "spec": {"unschedulable": cordoned}},
                        dry_run="All" if dry_run else None, _preload_content=False)
        changes.append(Change("cordon" if cordoned else "uncordon", "Node", name_of(node),
                              before={"unschedulable": node_cordoned(node)},
                              after={"unschedulable": cordoned}, dry_run=dry_run))
    return changes
