"""EKS managed add-ons for the twin (moto 5.2.5 has none): their lifecycle, and a managed ``vpc-cni`` that owns
``kube-system/aws-node`` as EKS's add-on manager does. ``twin.addon_api`` serves them over HTTP.

Rules:
- Lifecycle: create -> CREATING, update -> UPDATING, delete -> DELETING; after ``delay_s`` the change is
  applied to the cluster and the add-on is ACTIVE (or gone). A create, update or delete while the add-on is
  CREATING, UPDATING or DELETING is refused (``AddonError`` ``ResourceInUseException``, 409).
- An add-on that owns a workload (``OWNED``: ``vpc-cni`` owns the DaemonSet ``kube-system/aws-node``)
  renders its managed fields from the add-on's defaults (the workload as first adopted, kept for the
  twin's life), its version (the image tags) and its configuration values (JSON or YAML, the add-on's
  schema keys at the top level): ``affinity`` and ``tolerations`` replace the pod template's;
  ``resources`` replaces the agent container's; ``env`` and ``init.env`` (maps) are merged by name into the
  agent's and the init container's env; ``podAnnotations``/``podLabels`` are merged into the template's;
  ``livenessProbeTimeoutSeconds``/``readinessProbeTimeoutSeconds`` set the agent's probes' timeouts. A key
  dropped from the configuration falls back to the default. Unknown keys and non-string env values are
  refused, as EKS's schema validation refuses them.
- Every apply writes all managed fields, so a direct edit of one is reverted by the next create or update
  with ``resolveConflicts=OVERWRITE``. With ``PRESERVE`` (update only) fields edited since the last apply
  keep their edits; with ``NONE`` (the default, as in EKS) an apply that would overwrite an edit fails:
  the update is Failed with a ``ConfigurationConflict`` and the add-on UPDATE_FAILED (CREATE_FAILED for a
  create over a differing self-managed workload).
- An apply creates the workload when it is missing (from the adopted manifest). Deleting the add-on deletes
  its workload, unless ``preserve``.
- Add-ons without an owned workload (``kube-proxy``, ``coredns``...) are kept and reported, and change nothing.
"""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from twin.api import defaults
from twin.resources import DAEMONSETS, ResourceType
from twin.store import Store

Obj = dict[str, Any]

TRANSITIONAL = frozenset({"CREATING", "UPDATING", "DELETING"})
RESOLVE_CONFLICTS = ("OVERWRITE", "NONE", "PRESERVE")
DEFAULT_VERSIONS = {"vpc-cni": "v1.19.0-eksbuild.1", "kube-proxy": "v1.30.3-eksbuild.5",
                    "coredns": "v1.11.3-eksbuild.1"}
VERSION = re.compile(r"v\d+\.\d+\.\d+-eksbuild\.\d+")


@dataclass(frozen=True)
class Workload:
    """The object an add-on owns and the containers its configuration reaches."""

    rt: ResourceType
    namespace: str
    name: str
    container: str
    init_container: str | None = None
    schema: frozenset[str] = frozenset()  # the configuration's top-level keys


VPC_CNI_SCHEMA = frozenset({
    "affinity", "tolerations", "resources", "env", "init", "podAnnotations", "podLabels",
    "livenessProbeTimeoutSeconds", "readinessProbeTimeoutSeconds",
})
OWNED = {"vpc-cni": Workload(DAEMONSETS, "kube-system", "aws-node", "aws-node", "aws-vpc-cni-init",
                             VPC_CNI_SCHEMA)}


class AddonError(Exception):
    """An EKS error answer: ``code`` (``ResourceNotFoundException``...), HTTP ``status`` and message."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def not_found(message: str) -> AddonError:
    return AddonError("ResourceNotFoundException", 404, message)


def invalid(message: str) -> AddonError:
    return AddonError("InvalidParameterException", 400, message)


def in_use(message: str) -> AddonError:
    return AddonError("ResourceInUseException", 409, message)


# ---- versions and configuration values ---------------------------------------------------------------------


def resolve_version(name: str, version: str | None) -> str:
    """The version asked for, or the add-on's default; ``invalid`` when it is not an EKS build's."""
    version = version or DEFAULT_VERSIONS.get(name, "v1.0.0-eksbuild.1")
    if not VERSION.fullmatch(version):
        raise invalid(f"Addon version specified is not supported: {version}")
    return version


def schema_of(name: str) -> frozenset[str] | None:
    """The configuration's top-level keys for an add-on the twin models; None: anything goes."""
    w = OWNED.get(name)
    return w.schema if w is not None else None


def parse_configuration(text: str | None, schema: frozenset[str] | None = None) -> Obj:
    """The configuration values as a dict ("" is none); ``invalid`` for what EKS's schema check refuses."""
    if not (text or "").strip():
        return {}
    try:
        values = yaml.safe_load(text or "")  # JSON is YAML
    except yaml.YAMLError as err:
        raise invalid(f"ConfigurationValue provided in request is not supported: {err}") from None
    if not isinstance(values, dict):
        raise invalid("ConfigurationValue provided in request is not supported: Json schema validation failed "
                      "with error: [$: must be an object]")
    problems = [f"$.{k}: is not defined in the schema and the schema does not allow additional properties"
                for k in values if schema is not None and k not in schema]
    env_maps = [("env", values.get("env")), ("init.env", (values.get("init") or {}).get("env"))]
    for where, env in env_maps:
        if env is not None and not isinstance(env, dict):
            problems.append(f"$.{where}: {type(env).__name__} found, object expected")
        for name, value in (env or {}).items() if isinstance(env, dict) else ():
            if not isinstance(value, str):
                problems.append(f"$.{where}.{name}: {type(value).__name__} found, string expected")
    if problems:
        raise invalid("ConfigurationValue provided in request is not supported: Json schema validation failed "
                      f"with error: [{', '.join(problems)}]")
    return values


# ---- the managed fields of an owned workload ----------------------------------------------------------------


def _container(pod_spec: Obj, name: str | None, init: bool = False) -> Obj | None:
    if name is None:
        return None
    found = [c for c in pod_spec.get("initContainers" if init else "containers") or [] if c.get("name") == name]
    return found[0] if found else None


def read_managed(obj: Obj, w: Workload) -> Obj:
    """The managed fields as the workload holds them (None: absent)."""
    template = (obj.get("spec") or {}).get("template") or {}
    pod = template.get("spec") or {}
    agent = _container(pod, w.container) or {}
    init = _container(pod, w.init_container, init=True) or {}
    meta = template.get("metadata") or {}
    return {
        "affinity": pod.get("affinity"), "tolerations": pod.get("tolerations"),
        "podAnnotations": meta.get("annotations"), "podLabels": meta.get("labels"),
        "image": agent.get("image"), "env": agent.get("env"), "resources": agent.get("resources"),
        "livenessProbeTimeoutSeconds": (agent.get("livenessProbe") or {}).get("timeoutSeconds"),
        "readinessProbeTimeoutSeconds": (agent.get("readinessProbe") or {}).get("timeoutSeconds"),
        "init.image": init.get("image"), "init.env": init.get("env"),
    }


def _put(target: Obj | None, key: str, value: Any) -> None:
    if target is None:
        return
    if value is None:
        target.pop(key, None)
    else:
        target[key] = copy.deepcopy(value)


def write_managed(obj: Obj, w: Workload, values: Obj) -> None:
    """Set the managed fields on the workload (in place); a probe or container it lacks is left alone."""
    template = obj.setdefault("spec", {}).setdefault("template", {})
    pod = template.setdefault("spec", {})
    meta = template.setdefault("metadata", {})
    agent = _container(pod, w.container)
    init = _container(pod, w.init_container, init=True)
    for key in ("affinity", "tolerations"):
        _put(pod, key, values.get(key))
    _put(meta, "annotations", values.get("podAnnotations"))
    _put(meta, "labels", values.get("podLabels"))
    for key, src in (("image", "image"), ("env", "env"), ("resources", "resources")):
        _put(agent, key, values.get(src))
    for probe in ("livenessProbe", "readinessProbe"):
        if agent is not None and agent.get(probe) and values.get(f"{probe}TimeoutSeconds") is not None:
            agent[probe]["timeoutSeconds"] = values[f"{probe}TimeoutSeconds"]
    _put(init, "image", values.get("init.image"))
    _put(init, "env", values.get("init.env"))


def merged_env(env: list[Obj] | None, overrides: dict[str, str]) -> list[Obj]:
    """``env`` with each override's value set by name (appended when new), keeping the order."""
    merged = [dict(e) for e in env or []]
    for name, value in overrides.items():
        entry = next((e for e in merged if e.get("name") == name), None)
        if entry is None:
            merged.append({"name": name, "value": value})
        else:
            entry.pop("valueFrom", None)
            entry["value"] = value
    return merged


def retag(image: str | None, version: str) -> str | None:
    """The image with the add-on's version as its tag."""
    if not image:
        return image
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repo}:{version}"


def render(base: Obj, version: str, config: Obj) -> Obj:
    """The managed fields the add-on wants: defaults, then the version, then the configuration."""
    view = copy.deepcopy(base)
    view["image"], view["init.image"] = retag(base.get("image"), version), retag(base.get("init.image"), version)
    for key in ("affinity", "tolerations", "resources", "livenessProbeTimeoutSeconds",
                "readinessProbeTimeoutSeconds"):
        if key in config:
            view[key] = copy.deepcopy(config[key])
    if "env" in config:
        view["env"] = merged_env(base.get("env"), config["env"])
    if "env" in (config.get("init") or {}):
        view["init.env"] = merged_env(base.get("init.env"), config["init"]["env"])
    for key in ("podAnnotations", "podLabels"):
        if key in config:
            view[key] = {**(base.get(key) or {}), **config[key]}
    return view


@dataclass(frozen=True)
class Defaults:
    """An add-on's defaults in this twin: the workload's manifest as first adopted, and its managed fields."""

    manifest: Obj
    base: Obj

    @classmethod
    def adopt(cls, obj: Obj, w: Workload) -> Defaults:
        meta = obj.get("metadata") or {}
        manifest = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                    "metadata": {k: copy.deepcopy(meta[k]) for k in ("name", "namespace", "labels", "annotations")
                                 if meta.get(k)},
                    "spec": copy.deepcopy(obj.get("spec"))}
        return cls(manifest, read_managed(obj, w))


# ---- add-ons ---------------------------------------------------------------------------------------------------


@dataclass
class Update:
    """An add-on update, as ``DescribeUpdate`` shows it."""

    params: list[Obj]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "InProgress"
    created_at: float = field(default_factory=time.time)
    errors: list[Obj] = field(default_factory=list)

    def to_json(self) -> Obj:
        return {"id": self.id, "status": self.status, "type": "AddonUpdate", "params": self.params,
                "createdAt": self.created_at, "errors": self.errors}


@dataclass
class Addon:
    """One add-on of one cluster, in EKS's ``Addon`` shape (``to_json``)."""

    cluster: str
    name: str
    version: str
    arn: str
    configuration: str = ""
    service_account_role_arn: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    status: str = "CREATING"
    created_at: float = field(default_factory=time.time)
    modified_at: float = field(default_factory=time.time)
    issues: list[Obj] = field(default_factory=list)
    updates: dict[str, Update] = field(default_factory=dict)
    applied: Obj | None = None  # the managed fields as last applied (None: never applied)
    pending: tuple[str, str, bool] | None = None  # (operation, resolveConflicts or "", preserve)

    def to_json(self) -> Obj:
        body: Obj = {"addonName": self.name, "clusterName": self.cluster, "status": self.status,
                     "addonVersion": self.version, "health": {"issues": self.issues}, "addonArn": self.arn,
                     "createdAt": self.created_at, "modifiedAt": self.modified_at, "tags": self.tags,
                     "configurationValues": self.configuration}
        if self.service_account_role_arn:
            body["serviceAccountRoleArn"] = self.service_account_role_arn
        return body


class ApplyFailed(Exception):
    """An apply did not go through: an ``AddonIssue`` code, its message and the fields or objects concerned."""

    def __init__(self, code: str, message: str, resource_ids: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.code, self.message, self.resource_ids = code, message, sorted(resource_ids)


def conflict(w: Workload, fields_: Iterable[str]) -> ApplyFailed:
    """Fields someone else changed that the apply would overwrite, and resolveConflicts does not allow it."""
    where = f"{w.rt.kind}.{w.rt.group or 'core'} {w.name}"
    names = sorted(fields_)
    return ApplyFailed("ConfigurationConflict",
                       "Conflicts found when trying to apply. Will not continue due to resolve conflicts mode. "
                       "Conflicts:\n" + "\n".join(f"{where} - {f}" for f in names), names)


class AddonManager:
    """The add-ons of the twin's clusters; thread-safe. ``store`` (when given) holds the owned workloads."""

    def __init__(self, *, region: str, account: str, store: Store | None = None, delay_s: float = 0.0,
                 cluster_exists: Callable[[str], bool] = lambda name: True) -> None:
        self.region, self.account, self.store, self.delay_s = region, account, store, delay_s
        self.cluster_exists = cluster_exists
        self.lock = threading.RLock()
        self._addons: dict[tuple[str, str], Addon] = {}
        self._defaults: dict[tuple[str, str], Defaults] = {}
        self._timers: list[threading.Timer] = []

    # ---- reads -------------------------------------------------------------------------------------------------

    def describe(self, cluster: str, name: str) -> Addon:
        with self.lock:
            self._check_cluster(cluster)
            addon = self._addons.get((cluster, name))
            if addon is None:
                raise not_found(f"No addon: {name} found in cluster: {cluster}")
            return addon

    def names(self, cluster: str) -> list[str]:
        with self.lock:
            self._check_cluster(cluster)
            return sorted(n for c, n in self._addons if c == cluster)

    def describe_update(self, cluster: str, name: str, update_id: str) -> Update:
        update = self.describe(cluster, name).updates.get(update_id)
        if update is None:
            raise not_found(f"No update found for ID: {update_id}")
        return update

    # ---- writes ------------------------------------------------------------------------------------------------

    def create(self, cluster: str, name: str, *, version: str | None = None, configuration: str | None = None,
               resolve_conflicts: str | None = None, service_account_role_arn: str | None = None,
               tags: dict[str, str] | None = None, now: bool = False) -> Addon:
        """Register the add-on (CREATING); it is applied after ``delay_s`` (at once with ``now``)."""
        with self.lock:
            self._check_cluster(cluster)
            if (cluster, name) in self._addons:
                raise in_use("Addon already exists.")
            version = resolve_version(name, version)
            parse_configuration(configuration, schema_of(name))
            resolve = self._resolve(resolve_conflicts)
            resolve = "NONE" if resolve == "PRESERVE" else resolve  # nothing to preserve on a create
            addon = Addon(cluster, name, version, self._arn(cluster, name), configuration or "",
                          service_account_role_arn, dict(tags or {}))
            addon.pending = ("create", resolve, False)
            self._addons[(cluster, name)] = addon
            self._later(cluster, name, None, now=now)
            return addon

    def update(self, cluster: str, name: str, *, version: str | None = None, configuration: str | None = None,
               resolve_conflicts: str | None = None, service_account_role_arn: str | None = None) -> Update:
        """Change the add-on (UPDATING); applied after ``delay_s``, when fields that others changed are
        overwritten, kept or refused as ``resolve_conflicts`` says."""
        with self.lock:
            addon = self._idle(cluster, name)
            params = []
            if version is not None:
                params.append({"type": "AddonVersion", "value": resolve_version(name, version)})
            if configuration is not None:
                parse_configuration(configuration, schema_of(name))
                params.append({"type": "ConfigurationValues", "value": configuration})
            if service_account_role_arn is not None:
                params.append({"type": "ServiceAccountRoleArn", "value": service_account_role_arn})
            resolve = self._resolve(resolve_conflicts)
            if resolve_conflicts is not None:
                params.append({"type": "ResolveConflicts", "value": resolve})
            update = Update(params)
            addon.updates[update.id] = update
            addon.version = version or addon.version
            addon.configuration = addon.configuration if configuration is None else configuration
            addon.service_account_role_arn = service_account_role_arn or addon.service_account_role_arn
            addon.status, addon.modified_at, addon.pending = "UPDATING", time.time(), ("update", resolve, False)
            self._later(cluster, name, update.id)
            return update

    def delete(self, cluster: str, name: str, *, preserve: bool = False) -> Addon:
        """Mark the add-on DELETING; after ``delay_s`` it is gone, and so is its workload unless ``preserve``."""
        with self.lock:
            addon = self._idle(cluster, name)
            addon.status, addon.modified_at, addon.pending = "DELETING", time.time(), ("delete", "", preserve)
            self._later(cluster, name, None)
            return addon

    def install(self, cluster: str, name: str, *, version: str | None = None, configuration: str = "") -> Addon:
        """A scenario's add-on: created and applied at once (``OVERWRITE``), ACTIVE."""
        return self.create(cluster, name, version=version, configuration=configuration,
                           resolve_conflicts="OVERWRITE", now=True)

    def forget(self, cluster: str) -> None:
        """Drop the cluster's add-ons and defaults (its workloads are left alone): the name may be reused."""
        with self.lock:
            for key in [k for k in (*self._addons, *self._defaults) if k[0] == cluster]:
                self._addons.pop(key, None)
                self._defaults.pop(key, None)

    def stop(self) -> None:
        with self.lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()

    # ---- applying ------------------------------------------------------------------------------------------------

    def _later(self, cluster: str, name: str, update_id: str | None, *, now: bool = False) -> None:
        if now or self.delay_s <= 0:
            self._finish(cluster, name, update_id)
            return
        if self.store is not None:  # the wait EKS imposes on an add-on change (twin.delays)
            self.store.delays.record("addon-update", f"add-on {name}", started=time.monotonic(),
                                     duration_s=self.delay_s, waiting_on=f"EKS applying add-on {name} on {cluster}")
        timer = threading.Timer(self.delay_s, self._finish, args=(cluster, name, update_id))
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _finish(self, cluster: str, name: str, update_id: str | None) -> None:
        """The add-on manager's pass for one pending change: apply it, then ACTIVE (or failed, or gone)."""
        with self.lock:
            addon = self._addons.get((cluster, name))
            if addon is None or addon.pending is None:
                return
            operation, resolve, preserve = addon.pending
            addon.pending, addon.modified_at = None, time.time()
            if operation == "delete":
                if not preserve:
                    self._delete_workload(name)
                del self._addons[(cluster, name)]
                return
            update = addon.updates.get(update_id or "")
            try:
                self._apply(addon, resolve)
            except ApplyFailed as failed:
                addon.issues = [{"code": failed.code, "message": failed.message, "resourceIds": failed.resource_ids}]
                addon.status = "CREATE_FAILED" if operation == "create" else "UPDATE_FAILED"
                if update is not None:
                    update.status = "Failed"
                    update.errors = [{"errorCode": failed.code, "errorMessage": failed.message,
                                      "resourceIds": failed.resource_ids}]
                return
            addon.issues, addon.status = [], "ACTIVE"
            if update is not None:
                update.status = "Successful"

    def _apply(self, addon: Addon, resolve: str) -> None:
        """Write the rendered managed fields onto the workload (creating it when missing)."""
        w = OWNED.get(addon.name)
        if w is None or self.store is None:
            return
        current = self.store.get(w.rt, w.namespace, w.name)
        key = (addon.cluster, addon.name)
        if key not in self._defaults:
            if current is None:
                raise ApplyFailed("K8sResourceNotFound", f"{w.rt.kind} {w.namespace}/{w.name} not found and "
                                  "the twin has no manifest for it", [w.name])
            self._defaults[key] = Defaults.adopt(current, w)
        found = self._defaults[key]
        wanted = render(found.base, addon.version, parse_configuration(addon.configuration))
        if current is None:
            obj = copy.deepcopy(found.manifest)
            write_managed(obj, w, wanted)
            defaults.prepare_for_create(w.rt, obj)
            self.store.create(w.rt, obj)
            addon.applied = wanted
            return
        have = read_managed(current, w)
        edited = {k for k in wanted if have.get(k) != (addon.applied or {}).get(k)} if addon.applied is not None \
            else set(wanted)
        conflicts = {k for k in edited if have.get(k) != wanted[k]}
        if conflicts and resolve == "NONE":
            raise conflict(w, conflicts)
        final = {k: have[k] if resolve == "PRESERVE" and k in conflicts else v for k, v in wanted.items()}
        self.store.mutate(w.rt, w.namespace, w.name, lambda obj: write_managed(obj, w, final))
        addon.applied = final

    def _delete_workload(self, name: str) -> None:
        w = OWNED.get(name)
        if w is not None and self.store is not None and self.store.get(w.rt, w.namespace, w.name) is not None:
            self.store.delete(w.rt, w.namespace, w.name)

    # ---- checks -------------------------------------------------------------------------------------------------

    def _check_cluster(self, cluster: str) -> None:
        if not self.cluster_exists(cluster):
            raise not_found(f"No cluster found for name: {cluster}.")

    def _idle(self, cluster: str, name: str) -> Addon:
        addon = self.describe(cluster, name)
        if addon.status in TRANSITIONAL:
            raise in_use(f"Addon {name} is in {addon.status} state, the operation can not be performed "
                         "until it completes")
        return addon

    @staticmethod
    def _resolve(value: str | None) -> str:
        resolve = value or "NONE"
        if resolve not in RESOLVE_CONFLICTS:
            raise invalid(f"ResolveConflicts {value} is not supported")
        return resolve

    def _arn(self, cluster: str, name: str) -> str:
        return f"arn:aws:eks:{self.region}:{self.account}:addon/{cluster}/{name}/{uuid.uuid4()}"
