"""EKS managed node groups: describe and scale (``update_nodegroup_config``; no hook method exists for it).

Errors (``errors.classify``): throttling, 5xx and ``ResourceInUseException`` (an update of the group is
in progress) are ``TemporaryError`` once botocore's own retries are spent; a missing cluster or group, an
invalid parameter or a denied action is a ``PermanentError`` that says what to fix.
"""

from __future__ import annotations

from typing import Any

from cilium_migration.audit import Change
from cilium_migration.errors import (
    Kind,
    PermanentError,
    TemporaryError,
    classify,
    error_code,
    error_message,
    is_not_found,
)

Obj = dict[str, Any]


def describe_cluster(eks: Any, cluster: str) -> Obj:
    """The cluster; ``PermanentError`` when it does not exist."""
    try:
        return dict(eks.describe_cluster(name=cluster)["cluster"])
    except Exception as exc:
        _translate(exc, f"EKS cluster {cluster!r} not found: check cluster_name and region",
                   f"describe cluster {cluster!r}")
        raise


def describe(eks: Any, cluster: str, nodegroup: str) -> Obj:
    """The node group; ``PermanentError`` naming it when it does not exist."""
    try:
        return dict(eks.describe_nodegroup(clusterName=cluster, nodegroupName=nodegroup)["nodegroup"])
    except Exception as exc:
        _translate(exc, f"node group {nodegroup!r} not found in cluster {cluster!r}: create it (see the "
                        "runbook's eks-config.yaml) or fix old_nodegroups/new_nodegroup",
                   f"describe node group {nodegroup!r}")
        raise


_FIXES = {
    "AccessDeniedException": "grant the aws connection's identity this action (deploy/iam-policy.json)",
    "InvalidParameterException": "check the params against the node group (sizes, names)",
    "InvalidRequestException": "check the node group's state and the params",
}


def _translate(exc: Exception, missing: str, action: str = "EKS request") -> None:
    """Raise ours for an EKS error: not found -> ``missing``; temporary -> retry; permanent -> what to fix.
    Returns (the caller re-raises) when a retry may or may not help."""
    if is_not_found(exc):
        raise PermanentError(missing) from exc
    code = error_code(exc) or type(exc).__name__
    kind = classify(exc)
    if kind is Kind.TEMPORARY:
        what = "an update of the node group is in progress" if code == "ResourceInUseException" else code
        raise TemporaryError(f"{action}: {what} ({error_message(exc)}); retrying later helps") from exc
    if kind is Kind.PERMANENT:
        fix = _FIXES.get(code, "fix the request; retrying cannot help")
        raise PermanentError(f"{action} refused by EKS: {code}: {error_message(exc)}: {fix}") from exc


def scaling_for(current: Obj, size: int) -> Obj:
    """The scalingConfig for ``size``: min lowered and max raised only as far as needed."""
    cur = dict(current.get("scalingConfig") or {})
    return {"minSize": min(int(cur.get("minSize", 0)), size), "maxSize": max(int(cur.get("maxSize", 1)), size, 1),
            "desiredSize": size}


def scale(eks: Any, cluster: str, nodegroup: str, size: int, *, exact: Obj | None = None,
          dry_run: bool = False, log: Any = None) -> list[Change]:
    """Set the node group's desired size (min and max moved only as far as needed), or with ``exact`` its
    whole scalingConfig (a rollback restores min, max and desired); nothing when it is already there.
    Dry run: only logged."""
    current = describe(eks, cluster, nodegroup)
    before = dict(current.get("scalingConfig") or {})
    if exact:
        after: Obj = {k: int(exact[k]) for k in ("minSize", "maxSize", "desiredSize") if k in exact}
        if all(before.get(k) == v for k, v in after.items()):
            return []
    elif before.get("desiredSize") == size:
        return []
    else:
        after = scaling_for(current, size)
    if dry_run:
        if log is not None:
            log.info("would scale %s to %d (scalingConfig %s)", nodegroup, size, after)
    else:
        try:
            eks.update_nodegroup_config(clusterName=cluster, nodegroupName=nodegroup, scalingConfig=after)
        except Exception as exc:
            _translate(exc, f"node group {nodegroup!r} not found in cluster {cluster!r}",
                       f"scale node group {nodegroup!r} to {size}")
            raise
    return [Change("scale", "Nodegroup", nodegroup, None, before=before, after=after, dry_run=dry_run)]


def label(eks: Any, cluster: str, nodegroup: str, key: str, value: str, *, dry_run: bool = False,
          log: Any = None) -> list[Change]:
    """Set ``key=value`` in the managed node group's own labels (``UpdateNodegroupConfig``), so nodes it
    launches later (replacements, scale-ups) come up labelled; nothing when the label is already there."""
    current = describe(eks, cluster, nodegroup)
    labels = dict(current.get("labels") or {})
    if labels.get(key) == value:
        return []
    if dry_run:
        if log is not None:
            log.info("would label node group %s %s=%s", nodegroup, key, value)
    else:
        try:
            eks.update_nodegroup_config(clusterName=cluster, nodegroupName=nodegroup,
                                        labels={"addOrUpdateLabels": {key: value}})
        except Exception as exc:
            _translate(exc, f"node group {nodegroup!r} not found in cluster {cluster!r}",
                       f"label node group {nodegroup!r}")
            raise
    return [Change("label", "Nodegroup", nodegroup, None, before={key: labels.get(key)}, after={key: value},
                   dry_run=dry_run)]
