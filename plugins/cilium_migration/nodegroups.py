"""EKS managed node groups: describe and scale (``update_nodegroup_config``; no hook method exists for it)."""

from __future__ import annotations

from typing import Any

from cilium_migration.audit import Change
from cilium_migration.errors import (
    PermanentError,
    TemporaryError,
    api_status,
    is_not_found,
    is_temporary_status,
)

Obj = dict[str, Any]


def describe_cluster(eks: Any, cluster: str) -> Obj:
    """The cluster; ``PermanentError`` when it does not exist."""
    try:
        return dict(eks.describe_cluster(name=cluster)["cluster"])
    except Exception as exc:
        _translate(exc, f"EKS cluster {cluster!r} not found: check cluster_name and region")
        raise


def describe(eks: Any, cluster: str, nodegroup: str) -> Obj:
    """The node group; ``PermanentError`` naming it when it does not exist."""
    try:
        return dict(eks.describe_nodegroup(clusterName=cluster, nodegroupName=nodegroup)["nodegroup"])
    except Exception as exc:
        _translate(exc, f"node group {nodegroup!r} not found in cluster {cluster!r}: create it (see the "
                        "runbook's eks-config.yaml) or fix old_nodegroups/new_nodegroup")
        raise


def _translate(exc: Exception, missing: str) -> None:
    if is_not_found(exc):
        raise PermanentError(missing) from exc
    if is_temporary_status(api_status(exc)):
        raise TemporaryError(f"EKS API: {exc}") from exc


def scaling_for(current: Obj, size: int) -> Obj:
    """The scalingConfig for ``size``: min lowered and max raised only as far as needed."""
    cur = dict(current.get("scalingConfig") or {})
    return {"minSize": min(int(cur.get("minSize", 0)), size), "maxSize": max(int(cur.get("maxSize", 1)), size, 1),
            "desiredSize": size}


def scale(eks: Any, cluster: str, nodegroup: str, size: int, *, dry_run: bool = False,
          log: Any = None) -> list[Change]:
    """Set the node group's desired size; nothing when it is already there. Dry run: only logged."""
    current = describe(eks, cluster, nodegroup)
    before = dict(current.get("scalingConfig") or {})
    if before.get("desiredSize") == size:
        return []
    after = scaling_for(current, size)
    if dry_run:
        if log is not None:
            log.info("would scale %s to %d (scalingConfig %s)", nodegroup, size, after)
    else:
        try:
            eks.update_nodegroup_config(clusterName=cluster, nodegroupName=nodegroup, scalingConfig=after)
        except Exception as exc:
            _translate(exc, f"node group {nodegroup!r} not found in cluster {cluster!r}")
            raise
    return [Change("scale", "Nodegroup", nodegroup, None, before=before, after=after, dry_run=dry_run)]
