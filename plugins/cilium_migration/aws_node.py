"""The ``kube-system/aws-node`` DaemonSet (the AWS VPC CNI agent): fence it to the old nodes, restore, delete.

Fencing adds ``cni In [aws-cni]`` to every ``nodeSelectorTerm`` of its required node affinity, so the
agent never lands on a node that was not labelled before the Cilium nodes joined.

These functions patch the DaemonSet itself: the path for a self-managed aws-node. When vpc-cni is an EKS
managed add-on, ``cilium_migration.addons`` makes the same changes through the add-on.
"""

from __future__ import annotations

import copy
from typing import Any

from cilium_migration.audit import Change
from cilium_migration.clients import items, read_or_none
from cilium_migration.readiness import AWS_CNI, CNI_LABEL

NAMESPACE = "kube-system"
NAME = "aws-node"
FENCE = {"key": CNI_LABEL, "operator": "In", "values": [AWS_CNI]}

Obj = dict[str, Any]


def read(apps: Any) -> Obj | None:
    """The DaemonSet, or None when it does not exist."""
    return read_or_none(apps.read_namespaced_daemon_set, NAME, NAMESPACE)


def node_selector_terms(affinity: Obj | None) -> list[Obj]:
    required = ((affinity or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    return list(required.get("nodeSelectorTerms") or [])


def affinity_of(ds: Obj) -> Obj | None:
    return (((ds.get("spec") or {}).get("template") or {}).get("spec") or {}).get("affinity")


def _fenced(term: Obj) -> bool:
    return any(e.get("key") == CNI_LABEL and e.get("operator") == "In" and list(e.get("values") or [])
               == [AWS_CNI] for e in term.get("matchExpressions") or [])


def fenced_affinity(affinity: Obj | None) -> Obj:
    """The affinity with the fence in every term (a term is added when there is none). Idempotent."""
    new = copy.deepcopy(affinity or {})
    node_affinity = new.setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.get("nodeSelectorTerms") or [{}]
    fenced_terms = []
    for term in terms:
        term = dict(term)
        if not _fenced(term):
            term["matchExpressions"] = [*(term.get("matchExpressions") or []), dict(FENCE)]
        fenced_terms.append(term)
    required["nodeSelectorTerms"] = fenced_terms
    return new


def affinity_fenced(affinity: Obj | None) -> bool:
    """Every nodeSelectorTerm of the required node affinity carries the fence (and there is one)."""
    terms = node_selector_terms(affinity)
    return bool(terms) and all(_fenced(t) for t in terms)


def is_fenced(ds: Obj) -> bool:
    return affinity_fenced(affinity_of(ds))


def _patch_affinity(apps: Any, affinity: Obj | None, dry_run: bool) -> None:
    body = {"spec": {"template": {"spec": {"affinity": affinity}}}}
    apps.patch_namespaced_daemon_set(NAME, NAMESPACE, body, dry_run="All" if dry_run else None, _preload_content=False)


def fence(apps: Any, *, dry_run: bool = False) -> list[Change]:
    """Add the ``cni In [aws-cni]`` fence; nothing when already fenced."""
    from cilium_migration.errors import PermanentError

    ds = read(apps)
    if ds is None:
        raise PermanentError("aws-node DaemonSet not found in kube-system: is this an EKS cluster with the "
                             "AWS VPC CNI?")
    if is_fenced(ds):
        return []
    before = affinity_of(ds)
    after = fenced_affinity(before)
    _patch_affinity(apps, after, dry_run)
    return [Change("patch", "DaemonSet", NAME, NAMESPACE, before={"affinity": before},
                   after={"affinity": after}, dry_run=dry_run)]


def restore(apps: Any, snapshot: Obj | None, *, fenced: bool = False, dry_run: bool = False) -> list[Change]:
    """Bring aws-node back to the snapshot: recreate it when deleted, else reset its affinity. With
    ``fenced`` only recreate a deleted one, with the fence (rollback's first step: Cilium nodes may
    still exist), and leave an existing one as it is."""
    if not snapshot:
        return []
    ds = read(apps)
    wanted = fenced_affinity(affinity_of(snapshot)) if fenced else affinity_of(snapshot)
    if fenced and ds is not None:
        return []
    if ds is None:
        snapshot = {**snapshot, "spec": {**snapshot.get("spec", {}), "template": {
            **snapshot.get("spec", {}).get("template", {}), "spec": {
                **snapshot.get("spec", {}).get("template", {}).get("spec", {}), "affinity": wanted}}}}
        body = {"apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {k: v for k, v in (snapshot.get("metadata") or {}).items()
                             if k in ("name", "namespace", "labels", "annotations")},
                "spec": snapshot.get("spec")}
        apps.create_namespaced_daemon_set(NAMESPACE, body, dry_run="All" if dry_run else None, _preload_content=False)
        return [Change("create", "DaemonSet", NAME, NAMESPACE, before=None, after={"affinity": wanted},
                       dry_run=dry_run)]
    current = affinity_of(ds)
    if current == wanted:
        return []
    if wanted is None:
        # strategic merge: null removes the field
        _patch_affinity(apps, None, dry_run)
    else:
        # replace the required terms wholesale (lists without a merge key are replaced)
        _patch_affinity(apps, wanted, dry_run)
    return [Change("patch", "DaemonSet", NAME, NAMESPACE, before={"affinity": current},
                   after={"affinity": wanted}, dry_run=dry_run)]


def delete(apps: Any, *, dry_run: bool = False) -> list[Change]:
    """Delete aws-node (decommission); nothing when it is already gone."""
    ds = read(apps)
    if ds is None:
        return []
    apps.delete_namespaced_daemon_set(NAME, NAMESPACE, dry_run="All" if dry_run else None, _preload_content=False)
    return [Change("delete", "DaemonSet", NAME, NAMESPACE, before={"affinity": affinity_of(ds)}, after=None,
                   dry_run=dry_run)]


def pods(core: Any, ds: Obj) -> list[Obj]:
    """The DaemonSet's pods, by its selector's matchLabels."""
    match = ((ds.get("spec") or {}).get("selector") or {}).get("matchLabels") or {"k8s-app": NAME}
    selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
    return items(core.list_namespaced_pod, NAMESPACE, label_selector=selector)


def snapshot(ds: Obj) -> Obj:
    """What rollback needs to restore or recreate it."""
    meta = ds.get("metadata") or {}
    return {"metadata": {k: meta.get(k) for k in ("name", "namespace", "labels", "annotations") if meta.get(k)},
            "spec": ds.get("spec")}


def unfenced_affinity(affinity: Obj | None) -> Obj | None:
    """The affinity without our fence: what it was before this DAG (or an earlier run) touched it."""
    if affinity is None:
        return None
    new = copy.deepcopy(affinity)
    required = (new.get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return new
    terms = []
    for term in required.get("nodeSelectorTerms") or []:
        exprs = [e for e in term.get("matchExpressions") or []
                 if not (e.get("key") == CNI_LABEL and e.get("operator") == "In"
                         and list(e.get("values") or []) == [AWS_CNI])]
        term = {**term, "matchExpressions": exprs} if exprs or term.get("matchFields") else {}
        if term:
            terms.append(term)
    if terms:
        required["nodeSelectorTerms"] = terms
    else:
        new["nodeAffinity"].pop("requiredDuringSchedulingIgnoredDuringExecution")
        if not new["nodeAffinity"]:
            new.pop("nodeAffinity")
    return new or None
