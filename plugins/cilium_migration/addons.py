"""The AWS VPC CNI as an EKS managed add-on (``vpc-cni``): aws-node is changed through the add-on.

Where vpc-cni is an EKS add-on (the default on new clusters), EKS's add-on manager owns aws-node: a direct
patch of its affinity is reverted on the add-on's next update, and deleting the DaemonSet leaves the
add-on registered. So, when ``describe`` finds the add-on:
- the fence is the add-on's configuration: ``affinity`` (its own, else aws-node's, which is the add-on's
  default) with ``cni In [aws-cni]`` in every term, every other value kept, sent with
  ``update_addon(resolveConflicts=OVERWRITE)``; nothing is sent when the configuration holds the fence and
  aws-node shows it;
- the decommission is ``delete_addon`` without ``preserve``: the add-on manager deletes aws-node;
- rollback puts back the configuration values the preflight snapshot recorded, or re-creates the add-on
  with its version, configuration and service-account role when it was deleted.
Each function returns None when there is no add-on: the caller then patches the DaemonSet (``aws_node``).
Before acting, a change in progress (CREATING, UPDATING, DELETING) is waited for; after acting, the add-on
must be ACTIVE (or DEGRADED, whose workload the rollout gates check) with the values sent, within
``Wait.timeout``.

Errors: a missing add-on is None; throttling, 5xx and ``ResourceInUseException`` (another change of the
add-on in progress) are ``TemporaryError``, as is a wait that timed out (a retry waits again); an add-on
that failed to apply (CREATE_FAILED, UPDATE_FAILED...) or a refused request is a ``PermanentError``
quoting EKS.

IAM: ``DescribeAddon`` is called on every cluster; ``ADDON_ONLY_ACTIONS`` only where vpc-cni is an add-on.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from cilium_migration import aws_node
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

if TYPE_CHECKING:
    from cilium_migration.spec import MigrationSpec

NAME = "vpc-cni"
OVERWRITE = "OVERWRITE"
TRANSITIONAL = frozenset({"CREATING", "UPDATING", "DELETING"})
APPLIED = frozenset({"ACTIVE", "DEGRADED"})
ALWAYS_CALLED_ACTIONS = frozenset({"eks:DescribeAddon"})
ADDON_ONLY_ACTIONS = frozenset({"eks:UpdateAddon", "eks:DeleteAddon", "eks:CreateAddon"})

Obj = dict[str, Any]


@dataclass(frozen=True)
class Wait:
    """How long an add-on change may take, and how often to look."""

    timeout: float
    poll: float

    @classmethod
    def of(cls, spec: MigrationSpec) -> Wait:
        """The run's rollout timeout, polled at its interval (at most every 5 s: add-on changes are quick)."""
        return cls(spec.timeouts.rollout, min(spec.timeouts.poll_interval, 5.0))


# ---- reading ---------------------------------------------------------------------------------------------------


def describe(eks: Any, cluster: str) -> Obj | None:
    """The vpc-cni add-on, or None when vpc-cni is not an EKS add-on of the cluster (self-managed)."""
    try:
        return dict(eks.describe_addon(clusterName=cluster, addonName=NAME)["addon"])
    except Exception as exc:
        if is_not_found(exc):
            return None
        _translate(exc, f"describe add-on {NAME}")
        raise


def configuration(addon: Obj | None) -> Obj:
    """The add-on's configuration values (JSON or YAML) as a dict; {} when it has none."""
    text = (addon or {}).get("configurationValues") or ""
    values = yaml.safe_load(text) if text.strip() else {}
    if not isinstance(values, dict):
        raise PermanentError(f"add-on {NAME}: configurationValues is not a mapping: {text[:200]!r}")
    return values


def dump(values: Obj) -> str:
    """Configuration values as the JSON string EKS takes ("{}" for none)."""
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def has_fence(values: Obj) -> bool:
    return aws_node.affinity_fenced(values.get("affinity"))


def fenced(values: Obj, ds: Obj | None) -> Obj:
    """The configuration with the fence in its affinity (its own, else aws-node's: the add-on's default)."""
    affinity = values.get("affinity")
    if affinity is None and ds is not None:
        affinity = aws_node.affinity_of(ds)
    return {**values, "affinity": aws_node.fenced_affinity(affinity)}


def unfenced(values: Obj) -> Obj:
    """The configuration without our fence: what it was before this DAG (or an earlier run) touched it."""
    if "affinity" not in values:
        return values
    affinity = aws_node.unfenced_affinity(values["affinity"])
    rest = {k: v for k, v in values.items() if k != "affinity"}
    return rest if affinity is None else {**rest, "affinity": affinity}


def snapshot(addon: Obj | None) -> Obj | None:
    """What rollback needs to restore or re-create the add-on; the configuration without our fence."""
    if addon is None:
        return None
    values = configuration(addon)
    text = addon.get("configurationValues") or ""
    return {"name": NAME, "version": addon.get("addonVersion"),
            "configurationValues": dump(unfenced(values)) if has_fence(values) else text,
            "serviceAccountRoleArn": addon.get("serviceAccountRoleArn")}


# ---- the steps -------------------------------------------------------------------------------------------------


def fence(eks: Any, apps: Any, cluster: str, *, wait: Wait, dry_run: bool = False) -> list[Change] | None:
    """Put the fence into the add-on's configuration; [] when it holds it and aws-node shows it (a direct edit
    of aws-node is reverted by sending the configuration again); None when there is no add-on."""
    addon = settle(eks, cluster, wait)
    if addon is None:
        return None
    values = configuration(addon)
    ds = aws_node.read(apps)
    if has_fence(values) and addon.get("status") in APPLIED and (ds is None or aws_node.is_fenced(ds)):
        return []
    if ds is None and values.get("affinity") is None:
        raise PermanentError(f"add-on {NAME} exists but the aws-node DaemonSet does not: check the add-on's "
                             f"health (aws eks describe-addon --cluster-name {cluster} --addon-name {NAME})")
    wanted = fenced(values, ds)
    if not dry_run:
        _call(f"update add-on {NAME}", eks.update_addon, clusterName=cluster, addonName=NAME,
              configurationValues=dump(wanted), resolveConflicts=OVERWRITE)
        wait_applied(eks, cluster, wanted, wait)
    return [Change("update", "Addon", NAME, None, before={"configurationValues": addon.get("configurationValues")},
                   after={"configurationValues": dump(wanted)}, dry_run=dry_run)]


def restore(eks: Any, cluster: str, recorded: Obj | None, *, wait: Wait, fenced: bool = False,
            dry_run: bool = False) -> list[Change] | None:
    """Put back the configuration the snapshot recorded, re-creating the add-on when it was deleted; [] when
    it already holds it; None when the snapshot recorded no add-on. With ``fenced`` only re-create a
    deleted add-on, with the fence in its configuration, and leave an existing one as it is."""
    if not recorded:
        return None
    wanted = configuration(recorded)
    addon = settle(eks, cluster, wait)
    if fenced:
        if addon is not None:
            return []
        wanted = {**wanted, "affinity": aws_node.fenced_affinity(wanted.get("affinity"))}
    if addon is not None and configuration(addon) == wanted and addon.get("status") in APPLIED:
        return []
    after = {"configurationValues": recorded.get("configurationValues") or ""}
    if addon is None:
        if not dry_run:
            extra = {k: recorded[k] for k in ("serviceAccountRoleArn",) if recorded.get(k)}
            _call(f"re-create add-on {NAME}", eks.create_addon, clusterName=cluster, addonName=NAME,
                  addonVersion=recorded["version"], configurationValues=dump(wanted), resolveConflicts=OVERWRITE,
                  **extra)
            wait_applied(eks, cluster, wanted, wait)
        return [Change("create", "Addon", NAME, None, before=None, after={"version": recorded["version"], **after},
                       dry_run=dry_run)]
    if not dry_run:
        _call(f"update add-on {NAME}", eks.update_addon, clusterName=cluster, addonName=NAME,
              configurationValues=dump(wanted), resolveConflicts=OVERWRITE)
        wait_applied(eks, cluster, wanted, wait)
    return [Change("update", "Addon", NAME, None, before={"configurationValues": addon.get("configurationValues")},
                   after=after, dry_run=dry_run)]


def delete(eks: Any, apps: Any, cluster: str, *, wait: Wait, dry_run: bool = False) -> list[Change] | None:
    """Delete the add-on and with it aws-node (not ``preserve``); None when there is no add-on."""
    addon = settle(eks, cluster, wait)
    if addon is None:
        return None
    before = {"version": addon.get("addonVersion"), "configurationValues": addon.get("configurationValues")}
    changes = [Change("delete", "Addon", NAME, None, before=before, after=None, dry_run=dry_run)]
    if not dry_run:
        _call(f"delete add-on {NAME}", eks.delete_addon, clusterName=cluster, addonName=NAME)
        if settle(eks, cluster, wait) is not None:
            raise PermanentError(f"add-on {NAME} was not deleted: {_health(describe(eks, cluster))}")
        changes += aws_node.delete(apps)  # EKS deletes it with the add-on; a leftover goes too
    return changes


# ---- waiting ---------------------------------------------------------------------------------------------------


def settle(eks: Any, cluster: str, wait: Wait) -> Obj | None:
    """The add-on once no change of it is in progress; None when there is (or is no longer) one."""
    deadline = time.monotonic() + wait.timeout
    while True:
        addon = describe(eks, cluster)
        if addon is None or addon.get("status") not in TRANSITIONAL:
            return addon
        if time.monotonic() >= deadline:
            raise TemporaryError(f"add-on {NAME} still {addon.get('status')} after {wait.timeout:g}s; retrying "
                                 "later waits again")
        time.sleep(wait.poll)


def wait_applied(eks: Any, cluster: str, values: Obj, wait: Wait) -> Obj:
    """The add-on once ACTIVE (or DEGRADED) with ``values``; ``PermanentError`` when EKS failed to apply them."""
    addon = settle(eks, cluster, wait)
    if addon is None:
        raise TemporaryError(f"add-on {NAME} disappeared while being changed; retrying later looks again")
    if addon.get("status") not in APPLIED:
        raise PermanentError(f"add-on {NAME} is {addon.get('status')}: {_health(addon)}")
    if configuration(addon) != values:
        raise TemporaryError(f"add-on {NAME} holds configurationValues {addon.get('configurationValues')!r}, not "
                             f"{dump(values)!r}: changed by someone else meanwhile? retrying later looks again")
    return addon


def _health(addon: Obj | None) -> str:
    issues = ((addon or {}).get("health") or {}).get("issues") or []
    return "; ".join(f"{i.get('code')}: {i.get('message')}" for i in issues) or "no health issue reported"


# ---- errors ----------------------------------------------------------------------------------------------------


def _call(what: str, call: Any, **kwargs: Any) -> Any:
    try:
        return call(**kwargs)
    except Exception as exc:
        _translate(exc, what)
        raise


def _translate(exc: Exception, what: str) -> None:
    """Raise ours for an EKS error: temporary -> retry; permanent -> what to fix. Returns when unknown."""
    code = error_code(exc) or type(exc).__name__
    kind = classify(exc)
    if kind is Kind.TEMPORARY:
        reason = "another change of the add-on is in progress" if code == "ResourceInUseException" else code
        raise TemporaryError(f"{what}: {reason} ({error_message(exc)}); retrying later helps") from exc
    if kind is Kind.PERMANENT:
        fix = ("grant the aws connection's identity this action (deploy/iam-policy.json)"
               if code in ("AccessDeniedException", "AccessDeniedFault") else "retrying cannot help")
        raise PermanentError(f"{what} refused by EKS: {code}: {error_message(exc)}: {fix}") from exc
