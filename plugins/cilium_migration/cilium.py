"""Cilium through the Helm engine: the runbook's values, the chart rendered, its objects applied as Helm would.

Rules:
- Values start from the runbook (``manifests/cilium-values.yaml``) and are adapted to current charts
  (``tunnel: disabled`` -> ``routingMode: native``); overrides deep-merge, a ``None`` deletes a key.
- The chart is rendered offline by the Helm v4 engine (``helm_python``); a real ``helm install`` is not
  used because it validates against ``/openapi/v2|v3``, which the twin does not serve (docs/helm-decision.md).
- Objects are applied in Helm's install order with Helm's ownership metadata, and every install or
  upgrade is recorded as a release Secret ``sh.helm.release.v1.<release>.v<N>`` in Helm's own encoding,
  so ``helm list`` / ``helm upgrade`` on a real cluster see and adopt the release.
- ``apply`` is idempotent: an object whose owned fields (labels, annotations, everything but metadata and
  status) already hold the desired values is not written. Server-added fields and defaults are ignored;
  keys the previous revision set and this one drops are removed (Helm's three-way merge, simplified).
- Objects that exist without this release's ownership metadata are not taken over (``PermanentError``),
  as Helm refuses them, unless ``adopt=True``.
- Every function that writes takes ``dry_run``; then every write is sent with ``dryRun=All``.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cilium_migration.audit import Change
from cilium_migration.errors import PermanentError, TemporaryError, is_temporary_status

if TYPE_CHECKING:
    import helm_python
    from kubernetes.client import ApiClient

Obj = dict[str, Any]

log = logging.getLogger(__name__)

RELEASE = "cilium"
NAMESPACE = "kube-system"
VALUES_FILE = Path(__file__).parent / "manifests" / "cilium-values.yaml"
HELM_REPO_URL = "https://helm.cilium.io"
CHART_NAME = "cilium"

MANAGED_BY = "app.kubernetes.io/managed-by"
RELEASE_NAME = "meta.helm.sh/release-name"
RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
FIELD_MANAGER = "cilium-migration"

# Helm's releaseutil.InstallOrder; kinds not listed go last, alphabetically.
INSTALL_ORDER: tuple[str, ...] = (
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
    "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
)
# Helm's releaseutil.UninstallOrder: workloads and services first, then RBAC, config, namespaces.
UNINSTALL_ORDER: tuple[str, ...] = (
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService", "Ingress",
    "IngressClass", "Service", "CronJob", "Job", "StatefulSet", "HorizontalPodAutoscaler", "Deployment",
    "ReplicaSet", "ReplicationController", "Pod", "DaemonSet", "RoleBindingList", "RoleBinding", "RoleList",
    "Role", "ClusterRoleBindingList", "ClusterRoleBinding", "ClusterRoleList", "ClusterRole",
    "CustomResourceDefinition", "PersistentVolumeClaim", "PersistentVolume", "StorageClass", "ConfigMap",
    "SecretList", "Secret", "ServiceAccount", "PodDisruptionBudget", "PodSecurityPolicy", "LimitRange",
    "ResourceQuota", "NetworkPolicy", "Namespace", "PriorityClass",
)

_NOT_OWNED = ("apiVersion", "kind", "metadata", "status")


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
    and Relay on, agents only on nodes without ``cni=aws-cni``. ``rollOutCiliumPods`` and
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
    return deep_merge(deep_merge(values, adapted), overrides)


# ---- rendering ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RenderedChart:
    """A chart rendered for a release: its objects in install order, and what Helm stores about it."""

    objects: list[Obj]
    manifest: str  # "---\n# Source: <template>\n<yaml>" per object, as Helm stores it
    notes: str
    chart: dict[str, Any]  # the release's "chart" section: metadata, templates, values, files, schema

    @property
    def chart_name(self) -> str:
        return str(self.chart["metadata"].get("name", ""))

    @property
    def chart_version(self) -> str:
        return str(self.chart["metadata"].get("version", ""))


_pulled: dict[tuple[str, str | None, str | None], str] = {}


def load_chart(chart: str | os.PathLike[str], *, repo_url: str | None = None,
               version: str | None = None) -> helm_python.Chart:
    """Load a chart with the Helm engine.

    ``chart`` is a directory or ``.tgz`` path; a chart name with ``repo_url`` (``cilium`` at
    https://helm.cilium.io); an ``oci://`` reference; a URL of a ``.tgz``; or a repository URL alone, which
    means the chart ``cilium`` in it. Remote charts are pulled by the engine (``version``, else the
    newest), once per process. A chart that cannot be had is a ``PermanentError``.
    """
    import helm_python

    ref = os.fspath(chart)
    if ref.startswith(("http://", "https://")) and not ref.endswith(".tgz") and repo_url is None:
        ref, repo_url = CHART_NAME, ref
    try:
        if repo_url or ref.startswith(("oci://", "http://", "https://")):
            key = (ref, repo_url, version)
            if key not in _pulled:
                dest = tempfile.mkdtemp(prefix="cilium-chart-")
                helm_python.pull(ref, repo_url=repo_url, version=version, destination=dest)
                archives = sorted(Path(dest).glob("*.tgz"))
                if not archives:
                    raise PermanentError(f"pulling chart {ref} {version or ''} from {repo_url} gave nothing")
                _pulled[key] = str(archives[0])
            ref = _pulled[key]
        return helm_python.Chart.load(ref)
    except helm_python.HelmError as exc:
        message = f"cannot load chart {ref!r} (repo {repo_url}, version {version}): {exc}"
        if isinstance(exc, helm_python.HelmRepoError) and _UNREACHABLE.search(str(exc)):
            raise TemporaryError(message) from exc
        raise PermanentError(message) from exc


_UNREACHABLE = re.compile(r"cannot be reached|dial tcp|timeout|connection (refused|reset)|no such host|\b5\d\d\b",
                          re.IGNORECASE)


def render_release(chart: str | os.PathLike[str], values: Mapping[str, Any], *, release: str = RELEASE,
                   namespace: str = NAMESPACE, repo_url: str | None = None,
                   version: str | None = None) -> RenderedChart:
    """Render ``chart`` with the Helm engine (offline, as for an install) into a ``RenderedChart``."""
    import helm_python

    with load_chart(chart, repo_url=repo_url, version=version) as loaded:
        try:
            files = loaded.render(dict(values), name=release, namespace=namespace, is_install=True)
        except helm_python.HelmError as exc:
            raise PermanentError(f"chart {loaded.name} {loaded.version} does not render: {exc}") from exc
        metadata = loaded.metadata
        chart_section: dict[str, Any] = {
            "metadata": metadata,
            "lock": None,
            "templates": [_file(t) for t in loaded.templates],
            "values": loaded.values,
            "schema": _b64(json.dumps(loaded.schema).encode()) if loaded.schema else None,
            "files": [_file(f) for f in loaded.files],
        }
    notes, docs = "", []
    for path in sorted(files):
        if path.endswith("NOTES.txt"):  # only the top chart's notes count, as in Helm
            if path == f"{metadata.get('name')}/templates/NOTES.txt":
                notes = files[path]
            continue
        for doc in yaml.safe_load_all(files[path]):
            if isinstance(doc, dict) and doc.get("kind"):
                docs.append((path, doc))
    docs = sort_install_order(docs)
    manifest = "".join(f"---\n# Source: {path}\n{yaml.safe_dump(doc, sort_keys=False)}" for path, doc in docs)
    return RenderedChart([doc for _, doc in docs], manifest, notes, chart_section)


def render(chart: str | os.PathLike[str], values: Mapping[str, Any], *, release: str = RELEASE,
           namespace: str = NAMESPACE, repo_url: str | None = None, version: str | None = None) -> list[Obj]:
    """The chart's objects rendered by the Helm engine, without empty documents and NOTES, in the order
    Helm installs them."""
    return render_release(chart, values, release=release, namespace=namespace, repo_url=repo_url,
                          version=version).objects


def sort_install_order(docs: Sequence[tuple[str, Obj]]) -> list[tuple[str, Obj]]:
    """Stable sort by Helm's install order of kinds; unknown kinds last, alphabetically."""
    rank = {kind: i for i, kind in enumerate(INSTALL_ORDER)}

    def key(item: tuple[str, Obj]) -> tuple[int, str]:
        kind = str(item[1].get("kind", ""))
        return (rank[kind], "") if kind in rank else (len(rank), kind)

    return sorted(docs, key=key)


def _file(f: Mapping[str, str]) -> dict[str, str]:
    return {"name": f["name"], "data": _b64(f["data"].encode())}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---- the Kubernetes API, through the caller's ApiClient --------------------------------------------

@dataclass(frozen=True)
class _Resource:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


class _Kube:
    """Raw REST calls through a ``kubernetes.client.ApiClient`` (its host, auth, TLS and retries),
    with kinds resolved through the server's discovery documents."""

    def __init__(self, api_client: ApiClient) -> None:
        self.client = api_client
        self._by_gv: dict[str, dict[str, _Resource]] = {}

    def request(self, method: str, path: str, *, query: Iterable[tuple[str, str]] = (), body: Any = None,
                content_type: str = "application/json", missing_ok: bool = False) -> Any:
        """The decoded JSON answer; None for a 404 when ``missing_ok``. Errors: 429/5xx ->
        ``TemporaryError``, others -> ``PermanentError``."""
        from kubernetes.client.exceptions import ApiException

        try:
            resp = self.client.call_api(
                path, method, query_params=list(query), body=body,
                header_params={"Accept": "application/json", "Content-Type": content_type},
                auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                _request_timeout=30)
        except ApiException as exc:
            if exc.status == 404 and missing_ok:
                return None
            message = f"{method} {path}: {exc.status} {exc.reason}: {_status_message(exc.body)}"
            if is_temporary_status(exc.status) or exc.status == 409:
                raise TemporaryError(message) from exc
            raise PermanentError(message) from exc
        data = resp.data
        return json.loads(data) if data else None

    def resources(self, api_version: str) -> dict[str, _Resource]:
        """Kind -> resource for one group version (top-level resources only); empty when not served."""
        if api_version not in self._by_gv:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            doc = self.request("GET", path, missing_ok=True) or {}
            self._by_gv[api_version] = {
                r["kind"]: _Resource(api_version, r["kind"], r["name"], bool(r.get("namespaced")))
                for r in doc.get("resources", []) if "/" not in r["name"]
                and {"list", "delete"} <= set(r.get("verbs", []))}
        return self._by_gv[api_version]

    def resource(self, api_version: str, kind: str) -> _Resource:
        found = self.resources(api_version).get(kind)
        if found is None:
            raise PermanentError(f"the cluster does not serve {api_version} {kind}")
        return found

    def all_resources(self) -> list[_Resource]:
        """Every listable, deletable top-level resource, at each group's preferred version."""
        versions = ["v1"]
        groups = self.request("GET", "/apis") or {}
        versions += [g["preferredVersion"]["groupVersion"] for g in groups.get("groups", [])]
        return [r for gv in versions for r in self.resources(gv).values()]


def _status_message(body: Any) -> str:
    try:
        return str(json.loads(body).get("message", body))
    except (TypeError, ValueError, AttributeError):
        return str(body)


def _dry(dry_run: bool) -> list[tuple[str, str]]:
    return [("dryRun", "All")] if dry_run else []


# ---- applying ---------------------------------------------------------------------------------------

def with_ownership(obj: Obj, *, release: str, namespace: str) -> Obj:
    """A copy of ``obj`` carrying Helm's ownership label and annotations for ``release``."""
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), MANAGED_BY: "Helm"}
    meta["annotations"] = {**(meta.get("annotations") or {}), RELEASE_NAME: release,
                           RELEASE_NAMESPACE: namespace}
    return out


def owned_fields(obj: Mapping[str, Any]) -> Obj:
    """What a release owns of an object: its labels and annotations, and every top-level field but
    apiVersion, kind, metadata and status (spec, data, rules, subjects, roleRef, ...)."""
    meta = obj.get("metadata") or {}
    owned: Obj = {"metadata": {"labels": dict(meta.get("labels") or {}),
                               "annotations": dict(meta.get("annotations") or {})}}
    owned.update({k: copy.deepcopy(v) for k, v in obj.items() if k not in _NOT_OWNED})
    return owned


def owner_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(release, namespace) from Helm's ownership metadata, or None when the object has none."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if (meta.get("labels") or {}).get(MANAGED_BY) != "Helm" or RELEASE_NAME not in annotations:
        return None
    return annotations[RELEASE_NAME], annotations.get(RELEASE_NAMESPACE, "")


def apply(api_client: ApiClient, objects: Iterable[Obj], *, release: str = RELEASE,
          namespace: str = NAMESPACE, dry_run: bool = False, previous: Iterable[Obj] = (),
          adopt: bool = False, log: logging.Logger = log) -> list[Change]:
    """Create or patch each object (in the given order) so it carries the desired owned fields.

    Per object: absent -> ``create``; present and different -> ``patch`` (JSON merge patch of the owned
    fields, plus ``null`` for keys that ``previous`` -- the same object as the previous revision rendered
    it -- set and this one drops); present and equal -> ``unchanged``, nothing sent. Returns one
    ``Change`` per object; a patch's before/after hold only the changed paths.
    """
    kube = _Kube(api_client)
    before_by_key = {_key(o, namespace): o for o in previous}
    changes: list[Change] = []
    for raw in objects:
        res = kube.resource(raw["apiVersion"], raw["kind"])
        desired = with_ownership(raw, release=release, namespace=namespace)
        ns = (desired["metadata"].get("namespace") or namespace) if res.namespaced else None
        if ns:
            desired["metadata"]["namespace"] = ns
        name = desired["metadata"]["name"]
        current = kube.request("GET", res.path(ns, name), missing_ok=True)
        if current is None:
            created = kube.request("POST", res.path(ns), body=desired,
                                   query=_dry(dry_run) + [("fieldManager", FIELD_MANAGER)])
            rv = None if dry_run else (created or {}).get("metadata", {}).get("resourceVersion")
            change = Change("create", res.kind, name, ns, None, {"resourceVersion": rv}, dry_run)
        else:
            owner = owner_of(current)
            if owner != (release, namespace) and not adopt:
                raise PermanentError(
                    f"{res.kind} {ns + '/' if ns else ''}{name} exists and is not owned by Helm release "
                    f"{namespace}/{release} (owner: {owner}); remove it or adopt it explicitly")
            want = owned_fields(desired)
            prev = before_by_key.get(_key(raw, namespace))
            dropped = _dropped_keys(owned_fields(prev), want) if prev else {}
            diff = _differences(owned_fields(current), want) + _present_paths(owned_fields(current), dropped)
            if not diff:
                change = Change("unchanged", res.kind, name, ns, None, None, dry_run)
            else:
                kube.request("PATCH", res.path(ns, name), body=deep_merge_nulls(want, dropped),
                             content_type="application/merge-patch+json",
                             query=_dry(dry_run) + [("fieldManager", FIELD_MANAGER)])
                change = Change("patch", res.kind, name, ns, {p: b for p, b, _ in diff},
                                {p: a for p, _, a in diff}, dry_run)
        if change.action != "unchanged":
            log.info("CHANGE %s", change.log_line())
        changes.append(change)
    return changes


def _key(obj: Mapping[str, Any], namespace: str) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind")), str(meta.get("namespace") or namespace), str(meta.get("name")))


def _differences(current: Any, desired: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, current, desired) for every leaf of ``desired`` that ``current`` does not hold. Maps in
    ``current`` may carry more keys; lists must match element by element; an empty desired map or list
    is satisfied by an absent one (servers drop them)."""
    if isinstance(desired, dict):
        if not isinstance(current, dict):
            return [] if not desired and current is None else [(path, current, desired)]
        out = []
        for k, v in desired.items():
            out += _differences(current.get(k), v, f"{path}.{k}" if path else k)
        return out
    if isinstance(desired, list):
        if not isinstance(current, list) or len(current) != len(desired):
            return [] if not desired and current is None else [(path, current, desired)]
        if any(_differences(c, d) for c, d in zip(current, desired, strict=True)):
            return [(path, current, desired)]
        return []
    if desired is None:
        return []
    return [] if current == desired else [(path, current, desired)]


def _dropped_keys(previous: Any, desired: Any) -> dict[str, Any]:
    """A merge-patch fragment of ``None`` for every map key ``previous`` has and ``desired`` lacks."""
    out: dict[str, Any] = {}
    if isinstance(previous, dict) and isinstance(desired, dict):
        for k, v in previous.items():
            if k not in desired:
                out[k] = None
            elif isinstance(v, dict) and isinstance(desired[k], dict):
                nested = _dropped_keys(v, desired[k])
                if nested:
                    out[k] = nested
    return out


def _present_paths(current: Any, dropped: Mapping[str, Any], path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, current, None) for each dropped key still present in ``current``."""
    out: list[tuple[str, Any, Any]] = []
    if not isinstance(current, dict):
        return out
    for k, v in dropped.items():
        here = f"{path}.{k}" if path else k
        if v is None and k in current:
            out.append((here, current[k], None))
        elif isinstance(v, dict):
            out += _present_paths(current.get(k), v, here)
    return out


def deep_merge_nulls(base: Mapping[str, Any], nulls: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``nulls`` laid over it, keeping the ``None`` leaves (a merge patch that deletes)."""
    out = copy.deepcopy(dict(base))
    for k, v in nulls.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge_nulls(out[k], v)
        else:
            out[k] = v
    return out


# ---- the release record ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReleaseState:
    """The latest revision of a release, read from its release Secret."""

    release: str
    namespace: str
    revision: int
    status: str  # deployed, superseded, failed, uninstalling, ...
    chart_name: str
    chart_version: str
    app_version: str
    values: dict[str, Any] = field(default_factory=dict)  # the user-supplied values ("config")
    manifest: str = ""

    @property
    def installed(self) -> bool:
        return self.status == "deployed"

    @property
    def objects(self) -> list[Obj]:
        """The objects of the recorded manifest."""
        return [d for d in yaml.safe_load_all(self.manifest) if isinstance(d, dict) and d.get("kind")]


def secret_name(release: str, revision: int) -> str:
    return f"sh.helm.release.v1.{release}.v{revision}"


def encode_release(body: Mapping[str, Any]) -> str:
    """Helm's storage encoding: base64(gzip(json)). (The Secret's ``data`` adds one more base64.)"""
    return _b64(gzip.compress(json.dumps(body, separators=(",", ":")).encode()))


def decode_release(data: str) -> dict[str, Any]:
    raw = base64.b64decode(data)
    if raw[:3] == b"\x1f\x8b\x08":
        raw = gzip.decompress(raw)
    decoded: dict[str, Any] = json.loads(raw)
    return decoded


def _release_secrets(kube: _Kube, release: str, namespace: str) -> list[Obj]:
    found = kube.request("GET", f"/api/v1/namespaces/{namespace}/secrets",
                         query=[("labelSelector", f"owner=helm,name={release}")]) or {}
    items: list[Obj] = found.get("items") or []
    return sorted(items, key=lambda s: int(s["metadata"].get("labels", {}).get("version", "0")))


def _secret_body(secret: Mapping[str, Any]) -> dict[str, Any]:
    return decode_release(base64.b64decode(secret["data"]["release"]).decode())


def release_state(api_client: ApiClient, *, release: str = RELEASE,
                  namespace: str = NAMESPACE) -> ReleaseState | None:
    """The release's latest revision, or None when no release Secret exists."""
    secrets = _release_secrets(_Kube(api_client), release, namespace)
    if not secrets:
        return None
    body = _secret_body(secrets[-1])
    meta = body.get("chart", {}).get("metadata", {})
    return ReleaseState(release, namespace, int(body.get("version", 0)), body.get("info", {}).get("status", ""),
                        meta.get("name", ""), meta.get("version", ""), meta.get("appVersion", ""),
                        body.get("config") or {}, body.get("manifest", ""))


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def record_release(api_client: ApiClient, rendered: RenderedChart, values: Mapping[str, Any], *,
                   release: str = RELEASE, namespace: str = NAMESPACE, dry_run: bool = False,
                   log: logging.Logger = log) -> ReleaseState:
    """Store revision N+1 of the release as Helm does (Secret ``sh.helm.release.v1.<release>.v<N+1>``,
    type ``helm.sh/release.v1``, labels ``name``, ``owner=helm``, ``status=deployed``, ``version``) and
    mark the earlier deployed revisions ``superseded``."""
    kube = _Kube(api_client)
    secrets = _release_secrets(kube, release, namespace)
    now = datetime.now(UTC)
    first_deployed = _rfc3339(now)
    for old in secrets:
        body = _secret_body(old)
        first_deployed = body.get("info", {}).get("first_deployed") or first_deployed
        if old["metadata"].get("labels", {}).get("status") == "deployed":
            body["info"]["status"] = "superseded"
            patch = {"metadata": {"labels": {"status": "superseded", "modifiedAt": str(int(now.timestamp()))}},
                     "data": {"release": _b64(encode_release(body).encode())}}
            kube.request("PATCH", f"/api/v1/namespaces/{namespace}/secrets/{old['metadata']['name']}",
                         body=patch, content_type="application/merge-patch+json", query=_dry(dry_run))
    revision = max([int(s["metadata"]["labels"].get("version", "0")) for s in secrets], default=0) + 1
    body = {
        "name": release,
        "info": {"first_deployed": first_deployed, "last_deployed": _rfc3339(now),
                 "deleted": "0001-01-01T00:00:00Z",
                 "description": "Install complete" if revision == 1 else "Upgrade complete",
                 "status": "deployed", "notes": rendered.notes},
        "chart": rendered.chart,
        "config": dict(values),
        "manifest": rendered.manifest,
        "version": revision,
        "namespace": namespace,
    }
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": secret_name(release, revision), "namespace": namespace,
                     "labels": {"name": release, "owner": "helm", "status": "deployed",
                                "version": str(revision), "createdAt": str(int(now.timestamp()))}},
        "data": {"release": _b64(encode_release(body).encode())},
    }
    kube.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body=secret, query=_dry(dry_run))
    meta = rendered.chart["metadata"]
    log.info("%srecorded Helm release %s/%s revision %d (chart %s-%s)", "[dry run] " if dry_run else "",
             namespace, release, revision, meta.get("name"), meta.get("version"))
    return ReleaseState(release, namespace, revision, "deployed", meta.get("name", ""), meta.get("version", ""),
                        meta.get("appVersion", ""), dict(values), rendered.manifest)


def deploy(api_client: ApiClient, chart: str | os.PathLike[str], values: Mapping[str, Any], *,
           release: str = RELEASE, namespace: str = NAMESPACE, dry_run: bool = False,
           repo_url: str | None = None, version: str | None = None, adopt: bool = False,
           log: logging.Logger = log) -> list[Change]:
    """``helm upgrade --install``: render, apply, delete what the previous revision had and this one
    has not, and record a new revision -- unless nothing changed and the recorded values and chart are
    the same (a retried task records nothing). The last change is the release itself (``install`` or
    ``upgrade``) when a revision is recorded."""
    rendered = render_release(chart, values, release=release, namespace=namespace, repo_url=repo_url,
                              version=version)
    state = release_state(api_client, release=release, namespace=namespace)
    previous = state.objects if state else []
    changes = apply(api_client, rendered.objects, release=release, namespace=namespace, dry_run=dry_run,
                    previous=previous, adopt=adopt, log=log)
    kept = {_key(o, namespace) for o in rendered.objects}
    stale = [o for o in previous if _key(o, namespace) not in kept]
    changes += _delete_objects(_Kube(api_client), _uninstall_sorted(stale), release=release,
                               namespace=namespace, dry_run=dry_run, log=log)
    same = (state is not None and state.installed and state.values == dict(values)
            and (state.chart_name, state.chart_version) == (rendered.chart_name, rendered.chart_version))
    if same and all(c.action == "unchanged" for c in changes):
        return changes
    recorded = record_release(api_client, rendered, values, release=release, namespace=namespace,
                              dry_run=dry_run, log=log)
    changes.append(Change(
        "install" if state is None else "upgrade", "HelmRelease", release, namespace,
        None if state is None else {"revision": state.revision, "chart": f"{state.chart_name}-{state.chart_version}"},
        {"revision": recorded.revision, "chart": f"{rendered.chart_name}-{rendered.chart_version}"}, dry_run))
    return changes


# ---- uninstalling ---------------------------------------------------------------------------------------

def _uninstall_sorted(objects: Iterable[Obj]) -> list[Obj]:
    rank = {kind: i for i, kind in enumerate(UNINSTALL_ORDER)}
    return sorted(objects, key=lambda o: (rank.get(str(o.get("kind")), -1), str(o.get("kind"))))


def _delete_objects(kube: _Kube, objects: Iterable[Obj], *, release: str, namespace: str, dry_run: bool,
                    log: logging.Logger) -> list[Change]:
    """Delete each object that still carries this release's ownership; absent ones are skipped."""
    changes = []
    for obj in objects:
        res = kube.resource(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata") or {}
        ns = (meta.get("namespace") or namespace) if res.namespaced else None
        current = kube.request("GET", res.path(ns, meta["name"]), missing_ok=True)
        if current is None or owner_of(current) != (release, namespace):
            continue
        gone = kube.request("DELETE", res.path(ns, meta["name"]), missing_ok=True,
                            query=_dry(dry_run) + [("propagationPolicy", "Background")])
        if gone is None:
            continue
        change = Change("delete", res.kind, meta["name"], ns,
                        {"resourceVersion": current["metadata"].get("resourceVersion")}, None, dry_run)
        log.info("CHANGE %s", change.log_line())
        changes.append(change)
    return changes


def _release_resources(kube: _Kube, release: str, namespace: str) -> list[_Resource]:
    """The served resource types of every recorded revision's manifest; every served type when none."""
    recorded = {(str(o["apiVersion"]), str(o["kind"]))
                for secret in _release_secrets(kube, release, namespace)
                for o in yaml.safe_load_all(_secret_body(secret).get("manifest", ""))
                if isinstance(o, dict) and o.get("kind") and o.get("apiVersion")}
    if not recorded:
        return kube.all_resources()
    return [res for av, kind in sorted(recorded) if (res := kube.resources(av).get(kind)) is not None]


def uninstall(api_client: ApiClient, *, release: str = RELEASE, namespace: str = NAMESPACE,
              dry_run: bool = False, log: logging.Logger = log) -> list[Change]:
    """``helm uninstall``: delete every object labelled ``app.kubernetes.io/managed-by=Helm`` whose
    annotations name this release (found across the resource types its recorded manifests hold, or
    every served type when no release is recorded), in Helm's uninstall order, then the release
    Secrets. Idempotent: nothing left means no changes. Listing only the recorded types keeps the
    identity's RBAC to what the chart creates."""
    kube = _Kube(api_client)
    owned: list[Obj] = []
    for res in _release_resources(kube, release, namespace):
        if res.kind == "Event":
            continue
        try:
            listed = kube.request("GET", res.path(), query=[("labelSelector", f"{MANAGED_BY}=Helm")],
                                  missing_ok=True) or {}
        except PermanentError as exc:  # e.g. 403/405 on a type this identity may not list
            log.debug("skipping %s %s: %s", res.api_version, res.kind, exc)
            continue
        for item in listed.get("items") or []:
            if owner_of(item) == (release, namespace):
                owned.append({"apiVersion": res.api_version, "kind": res.kind, "metadata": item["metadata"]})
    changes = _delete_objects(kube, _uninstall_sorted(owned), release=release, namespace=namespace,
                              dry_run=dry_run, log=log)
    for secret in _release_secrets(kube, release, namespace):
        name = secret["metadata"]["name"]
        gone = kube.request("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{name}", missing_ok=True,
                            query=_dry(dry_run))
        if gone is not None:
            change = Change("delete", "Secret", name, namespace,
                            {"resourceVersion": secret["metadata"].get("resourceVersion")}, None, dry_run)
            log.info("CHANGE %s", change.log_line())
            changes.append(change)
    return changes
