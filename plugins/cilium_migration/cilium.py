"""Cilium, installed, upgraded and uninstalled by Helm itself (``cilium_migration.helm``).

Rules:
- Values start from the runbook (``manifests/cilium-values.yaml``) and are adapted to current charts
  (``tunnel: disabled`` -> ``routingMode: native``); overrides deep-merge, a ``None`` deletes a key.
  Every Cilium component carries the fence ``cni NotIn [aws-cni]`` in its required node affinity (the
  agent, ``cilium-envoy``, ``cilium-operator``, ``hubble-relay``), so none lands on an aws-cni node
  until decommission.
- ``deploy`` is ``helm upgrade --install`` that only acts when it has to: a deployed release with the
  same chart and values whose objects all exist is left alone (no new revision, no re-issued
  certificate, no pod restarted), and says so. Otherwise Helm installs or upgrades; the chart's
  ``lookup`` keeps the CA across upgrades, as on any cluster.
- Every object the release touches is read before and after, and each difference becomes a ``Change``
  (``audit.object_change``: Secrets by key and fingerprint, never by value). Whether any pod template
  changed (so Cilium pods roll) is logged.
- ``arm_cni_uninstall`` sets ``cni.uninstall=true`` on the deployed release before it goes (Cilium's
  documented uninstall), so the agents remove their CNI configuration from the nodes when they stop.
- ``uninstall`` is ``helm uninstall``, then a check that nothing of the release is left: an object that
  is still there, or a release record, fails the task with the objects named.
- ``dry_run``: Helm renders against the cluster (``--dry-run=server``), nothing is written, and the
  changes are what the rendered manifest would change.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cilium_migration import helm
from cilium_migration.audit import Change, object_change
from cilium_migration.errors import PermanentError, TemporaryError
from cilium_migration.kube_objects import ObjectReader, ObjectRef, ref_of

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

Obj = dict[str, Any]

log = logging.getLogger(__name__)

RELEASE = "cilium"
NAMESPACE = "kube-system"
VALUES_FILE = Path(__file__).parent / "manifests" / "cilium-values.yaml"

# The old CNI's nodes: no Cilium component may run there until decommission.
FENCE: dict[str, Any] = {"key": "cni", "operator": "NotIn", "values": ["aws-cni"]}
# cilium-envoy's own default node affinity term in the real chart, kept beside the fence.
ENVOY_NO_SCHEDULE: dict[str, Any] = {"key": "cilium.io/no-schedule", "operator": "NotIn", "values": ["true"]}
POD_TEMPLATE_KINDS = frozenset({"DaemonSet", "Deployment", "StatefulSet"})


# ---- values -------------------------------------------------------------------------------------

def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``: maps merge key by key, anything else is replaced,
    and a ``None`` value removes the key (Helm's rule for user values)."""
    merged = copy.deepcopy(dict(base))
    for key, value in (override or {}).items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def eksctl_cluster_name(cluster_name: str, region: str) -> str:
    """The name ``cilium install`` derives from an eksctl context: ``<name>.<region>.eksctl.io`` with
    every character outside ``[a-z0-9-]`` turned into ``-`` (``dc-migrate-us-west-1-eksctl-io``)."""
    return re.sub(r"[^a-z0-9-]", "-", f"{cluster_name}.{region}.eksctl.io".lower())


def runbook_values(*, cluster_name: str, region: str, egress_interface: str = "eth0",
                   overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The runbook's Cilium values for this cluster, adapted to current charts, then ``overrides``.

    ENI IPAM, native routing (the runbook's ``tunnel: disabled``), the unmanaged-pod watcher off, Hubble
    and Relay on, every component only on nodes without ``cni=aws-cni`` (``fenced``). ``rollOutCiliumPods`` and
    ``operator.rollOutPods`` are on so that a later values change (the watcher turned back on) reaches
    the running agents and operator. Pure: reads only the packaged values file.
    """
    values: dict[str, Any] = yaml.safe_load(VALUES_FILE.read_text())
    if values.pop("tunnel", None) == "disabled":
        values["routingMode"] = "native"
    adapted = {
        "cluster": {"name": eksctl_cluster_name(cluster_name, region)},
        "egressMasqueradeInterfaces": egress_interface,
        "rollOutCiliumPods": True,
        "operator": {"rollOutPods": True, "unmanagedPodWatcher": {"restart": False}},
    }
    return deep_merge(fenced(deep_merge(values, adapted)), overrides)


def in_place_values(*, cluster_name: str, region: str, egress_interface: str = "eth0",
                    overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The in-place strategy's values: the runbook's (ENI IPAM, native routing, the unmanaged-pod watcher
    off) with no fence, so Cilium runs beside aws-node on every node, and ``cni.exclusive`` off, so the
    agent writes ``05-cilium.conflist`` (first by name: every new pod is Cilium's) and leaves aws-node's
    ``10-aws.conflist`` in place for the pods it already wired; then ``overrides``."""
    values = runbook_values(cluster_name=cluster_name, region=region, egress_interface=egress_interface)
    unfenced = deep_merge(values, {"affinity": None, "envoy": {"affinity": None}, "operator": {"affinity": None},
                                   "hubble": {"relay": {"affinity": None}}})
    return deep_merge(deep_merge(unfenced, {"cni": {"exclusive": False}}), overrides)


def strategy_values(*, in_place: bool, cluster_name: str, region: str, egress_interface: str = "eth0",
                    overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The values of the run's strategy: ``in_place_values`` or ``runbook_values`` (fenced)."""
    build = in_place_values if in_place else runbook_values
    return build(cluster_name=cluster_name, region=region, egress_interface=egress_interface, overrides=overrides)


def required_node_affinity(*expressions: Mapping[str, Any]) -> dict[str, Any]:
    """A pod ``affinity`` whose required node affinity is one term with ``expressions``."""
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [dict(e) for e in expressions]}]}}}


def fenced(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with the fence in every component's required node affinity: ``affinity`` (the agent),
    ``envoy.affinity`` (beside its own ``cilium.io/no-schedule`` term), ``operator.affinity`` and
    ``hubble.relay.affinity``. Their pod (anti-)affinities from the chart's defaults are kept (Helm merges
    maps key by key)."""
    return deep_merge(values, {
        "affinity": required_node_affinity(FENCE),
        "envoy": {"affinity": required_node_affinity(ENVOY_NO_SCHEDULE, FENCE)},
        "operator": {"affinity": required_node_affinity(FENCE)},
        "hubble": {"relay": {"affinity": required_node_affinity(FENCE)}},
    })


# ---- the release --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReleaseState:
    """The latest revision of a release, as Helm keeps it."""

    release: str
    namespace: str
    revision: int
    status: str  # deployed, superseded, failed, uninstalling, pending-install, ...
    chart_name: str
    chart_version: str
    app_version: str
    values: dict[str, Any] = field(default_factory=dict)  # the user-supplied values
    manifest: str = ""
    ever_deployed: bool = True  # some revision reached "deployed" (else only "install --replace" helps)

    @property
    def installed(self) -> bool:
        return self.status == "deployed"

    @property
    def objects(self) -> list[Obj]:
        """The objects of the recorded manifest."""
        return helm.manifest_objects(self.manifest)


def _state(config: Any, release: str, namespace: str) -> ReleaseState | None:
    revisions = helm.history(config, release)
    if not revisions:
        return None
    latest = revisions[-1]
    full = helm.get_all(config, release, int(latest["revision"]))
    summary = full.get("summary") or {}
    return ReleaseState(release, namespace, int(latest["revision"]), str(latest.get("status", "")),
                        str(latest.get("chart_name", "")), str(latest.get("chart_version", "")),
                        str(latest.get("app_version", "")), dict(full.get("config") or {}),
                        str(summary.get("manifest", "")),
                        any(r.get("status") in ("deployed", "superseded") for r in revisions))


def release_state(api_client: ApiClient, *, release: str = RELEASE,
                  namespace: str = NAMESPACE) -> ReleaseState | None:
    """The release's latest revision, or None when Helm has no record of it."""
    with helm.session(api_client, namespace) as config:
        return _state(config, release, namespace)


def render(chart: str | os.PathLike[str], values: Mapping[str, Any], *, release: str = RELEASE,
           namespace: str = NAMESPACE, repo_url: str | None = None, version: str | None = None) -> list[Obj]:
    """The chart's objects rendered offline by the Helm engine (no cluster), NOTES left out."""
    files = helm.render(chart, values, release=release, namespace=namespace, repo_url=repo_url,
                        version=version)
    return [obj for path in sorted(files) if not path.endswith("NOTES.txt")
            for obj in helm.manifest_objects(files[path])]


def _read_all(reader: ObjectReader, refs: list[ObjectRef]) -> dict[ObjectRef, Obj | None]:
    return {ref: reader.get(ref) for ref in refs}


def _refs(objects: list[Obj], namespace: str) -> list[ObjectRef]:
    return list(dict.fromkeys(ref_of(o, namespace) for o in objects))


def _overlay(current: Obj | None, desired: Obj) -> Obj:
    """What ``current`` becomes when ``desired`` is applied over it (a dry run's "after")."""
    return deep_merge(current or {}, desired) if current else copy.deepcopy(desired)


def _changes(before: Mapping[ObjectRef, Obj | None], after: Mapping[ObjectRef, Obj | None], *,
             dry_run: bool) -> list[Change]:
    return [object_change(ref.kind, ref.name, ref.namespace or None, before.get(ref), after.get(ref),
                          dry_run=dry_run) for ref in dict.fromkeys([*before, *after])]


def _log_changes(changes: list[Change], log: logging.Logger) -> None:
    for change in changes:
        if change.action != "unchanged":
            log.info("CHANGE %s", change.log_line())


def _pod_templates_changed(changes: list[Change]) -> list[str]:
    return [c.target for c in changes if c.kind in POD_TEMPLATE_KINDS and c.action == "patch"
            and any(str(path).startswith("spec.template") for path in c.after or {})]


def deploy(api_client: ApiClient, chart: str | os.PathLike[str], values: Mapping[str, Any], *,
           release: str = RELEASE, namespace: str = NAMESPACE, dry_run: bool = False,
           repo_url: str | None = None, version: str | None = None,
           log: logging.Logger = log) -> list[Change]:
    """``helm upgrade --install`` when something differs; see the module's rules. The last change is the
    release itself (``install`` or ``upgrade``) when Helm recorded a revision."""
    values = json.loads(json.dumps(dict(values)))  # as Helm stores them (plain JSON types)
    reader = ObjectReader(api_client)
    with helm.load_chart(chart, repo_url=repo_url, version=version) as loaded, \
            helm.session(api_client, namespace) as config:
        state = _state(config, release, namespace)
        chart_id = (str(loaded.name), str(loaded.version))
        if state is not None and state.installed and state.values == values \
                and (state.chart_name, state.chart_version) == chart_id:
            missing = [ref for ref, obj in _read_all(reader, _refs(state.objects, namespace)).items()
                       if obj is None]
            if not missing:
                log.info("Helm release %s/%s revision %d already has chart %s-%s with these values and all "
                         "its objects: nothing to upgrade, no Cilium pod restarts", namespace, release,
                         state.revision, *chart_id)
                return []
            log.info("release %s/%s: %s missing, upgrading to recreate", namespace, release,
                     ", ".join(map(str, missing)))
        before = _read_all(reader, _refs(state.objects if state else [], namespace))
        if state is None or not state.ever_deployed:
            result = helm.install(config, loaded, release, values, namespace=namespace, dry_run=dry_run,
                                  replace=state is not None)
        else:
            result = helm.upgrade(config, loaded, release, values, namespace=namespace, dry_run=dry_run)
    rendered = helm.manifest_objects(str(result.get("manifest", "")))
    new_refs = _refs(rendered, namespace)
    before.update({ref: reader.get(ref) for ref in new_refs if ref not in before} if dry_run
                  else {ref: None for ref in new_refs if ref not in before})
    if dry_run:
        desired = dict(zip(new_refs, rendered, strict=True))
        after = {ref: _overlay(before.get(ref), desired[ref]) if ref in desired else None for ref in before}
    else:
        after = _read_all(reader, list(before))
    changes = _changes(before, after, dry_run=dry_run)
    _log_changes(changes, log)
    rolled = _pod_templates_changed(changes)
    log.info("pod templates changed, their Cilium pods roll: %s" if rolled
             else "no pod template changed: no Cilium pod restarts%s", ", ".join(rolled))
    revision = int(result.get("revision") or 0)
    release_change = Change(
        "install" if state is None or not state.ever_deployed else "upgrade", "HelmRelease", release,
        namespace, None if state is None else {"revision": state.revision,
                                               "chart": f"{state.chart_name}-{state.chart_version}"},
        {"revision": revision, "chart": "-".join(chart_id)}, dry_run)
    log.info("CHANGE %s", release_change.log_line())
    return [*changes, release_change]


CNI_UNINSTALL: dict[str, Any] = {"cni": {"uninstall": True}}


def arm_cni_uninstall(api_client: ApiClient, chart: str | os.PathLike[str], *, release: str = RELEASE,
                      namespace: str = NAMESPACE, dry_run: bool = False, repo_url: str | None = None,
                      version: str | None = None, log: logging.Logger = log) -> list[Change]:
    """Cilium's documented uninstall, first half: upgrade the deployed release with its own values plus
    ``cni.uninstall=true`` (with ``rollOutCiliumPods`` the agents restart with it), so each agent removes
    its CNI configuration from its node when ``helm uninstall`` stops it. A release that is not deployed
    (none, or a failed install) cannot be upgraded: nothing is changed, and that is logged."""
    state = release_state(api_client, release=release, namespace=namespace)
    if state is None or not state.installed:
        log.info("Helm release %s/%s is %s: cni.uninstall cannot be set through Helm", namespace, release,
                 "absent" if state is None else f"{state.status} (revision {state.revision})")
        return []
    return deploy(api_client, chart, deep_merge(state.values, CNI_UNINSTALL), release=release,
                  namespace=namespace, dry_run=dry_run, repo_url=repo_url, version=version, log=log)


def uninstall(api_client: ApiClient, *, release: str = RELEASE, namespace: str = NAMESPACE,
              dry_run: bool = False, log: logging.Logger = log) -> list[Change]:
    """``helm uninstall``, then nothing of the release may be left: an object of its manifest that is
    still there, or a release record, fails with the objects named (temporary when Helm's error was).
    Idempotent: no release means no changes."""
    reader = ObjectReader(api_client)
    with helm.session(api_client, namespace) as config:
        state = _state(config, release, namespace)
        if state is None:
            log.info("no Helm release %s/%s: nothing to uninstall", namespace, release)
            return []
        refs = _refs(state.objects, namespace)
        before = _read_all(reader, refs)
        failure: PermanentError | TemporaryError | None = None
        try:
            helm.uninstall(config, release, dry_run=dry_run)
        except (PermanentError, TemporaryError) as exc:
            failure = exc
        records_left = [] if dry_run else helm.history(config, release)
    after = {ref: None for ref in refs} if dry_run else _read_all(reader, refs)
    changes = _changes(before, after, dry_run=dry_run)
    _log_changes(changes, log)
    left = [str(ref) for ref, obj in after.items() if obj is not None]
    left += [f"release record revision {r.get('revision')}" for r in records_left]
    if left or failure is not None:
        message = (f"helm uninstall {namespace}/{release} left {', '.join(left) or 'nothing'}"
                   f"{f': {failure}' if failure else ''}; fix the cause (a 403 names the permission the "
                   f"identity lacks) and clear this task")
        raise (TemporaryError if isinstance(failure, TemporaryError) else PermanentError)(message)
    log.info("uninstalled Helm release %s/%s revision %d: nothing of it is left", namespace, release,
             state.revision)
    return changes
