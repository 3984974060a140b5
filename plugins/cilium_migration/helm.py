"""Helm itself (the v4 engine bundled in ``helm_python``), reached with the task's Kubernetes identity.

Rules:
- Helm talks to the cluster as the ``KubernetesHook``'s ``ApiClient`` does: same server, CA, TLS and
  bearer token (refreshed through the client's own hook, as exec-based EKS tokens are). The kubeconfig
  Helm needs is built in memory and handed to the engine, which keeps it in a private temporary file
  while the session lasts; it never reaches a log.
- Release records live where ``helm`` keeps them: Secrets ``sh.helm.release.v1.<release>.v<N>`` in the
  release's namespace (the ``secret`` storage driver), so ``helm list`` and a later ``helm upgrade``
  see them.
- Install and upgrade run client-side apply (``server_side_apply`` off, as ``helm upgrade`` does for a
  release first installed that way) and skip the OpenAPI download (``disable_openapi_validation``):
  the API server still validates every object it is sent.
- Errors: a cluster that cannot be reached, a 429/5xx or a conflict is a ``TemporaryError``; anything
  else (a chart that does not render, a 403, an invalid object) is a ``PermanentError`` whose message
  is Helm's own.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cilium_migration.errors import PermanentError, TemporaryError

if TYPE_CHECKING:
    import helm_python
    from kubernetes.client import ApiClient

Release = dict[str, Any]

HELM_REPO_URL = "https://helm.cilium.io"
CHART_NAME = "cilium"
STORAGE_DRIVER = "secret"

_TEMPORARY = re.compile(
    r"cannot be reached|dial tcp|timeout|timed out|connection (refused|reset)|no such host|EOF|"
    r"too many requests|TooManyRequests|ServiceUnavailable|InternalError|the server is currently unable|"
    r"\b(429|500|502|503|504)\b|the object has been modified|another operation .* is in progress",
    re.IGNORECASE)


def engine() -> Any:
    """The ``helm_python`` module."""
    import helm_python

    return helm_python


@contextmanager
def _out_of_the_working_directory() -> Iterator[None]:
    """The engine keeps a discovery cache in ``$HOME/.kube/cache``, which in Airflow's task processes
    resolves to ``.kube/cache`` in the working directory (seen with LocalExecutor): work in a private
    temporary directory while the engine runs, so nothing lands in the worker's."""
    previous = os.getcwd()
    os.chdir(tempfile.mkdtemp(prefix="cilium-migration-helm-"))
    try:
        yield
    finally:
        os.chdir(previous)


def kubeconfig_for(api_client: ApiClient) -> str:
    """A kubeconfig (YAML) carrying the ``ApiClient``'s server, CA, TLS settings and credentials."""
    conf = api_client.configuration
    cluster: dict[str, Any] = {"server": conf.host}
    if getattr(conf, "ssl_ca_cert", None):
        cluster["certificate-authority"] = conf.ssl_ca_cert
    if not getattr(conf, "verify_ssl", True):
        cluster["insecure-skip-tls-verify"] = True
    if getattr(conf, "tls_server_name", None):
        cluster["tls-server-name"] = conf.tls_server_name
    user: dict[str, Any] = {}
    bearer = conf.get_api_key_with_prefix("BearerToken") or conf.get_api_key_with_prefix("authorization")
    if bearer:
        user["token"] = bearer.removeprefix("Bearer ").strip()
    if getattr(conf, "cert_file", None):
        user["client-certificate"] = conf.cert_file
    if getattr(conf, "key_file", None):
        user["client-key"] = conf.key_file
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "migration",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": "migration", "user": user}],
        "contexts": [{"name": "migration", "context": {"cluster": "cluster", "user": "migration"}}],
    })


@contextmanager
def session(api_client: ApiClient, namespace: str) -> Iterator[helm_python.Config]:
    """A Helm configuration for ``namespace`` with the client's identity and Secret release storage."""
    helm_python = engine()

    with _out_of_the_working_directory():
        config = helm_python.Config(kubeconfig_content=kubeconfig_for(api_client), namespace=namespace,
                                    storage_driver=STORAGE_DRIVER)
        try:
            yield config
        finally:
            config.close()


# ---- charts -----------------------------------------------------------------------------------------

_pulled: dict[tuple[str, str | None, str | None], str] = {}


def chart_path(chart: str | os.PathLike[str], *, repo_url: str | None = None,
               version: str | None = None) -> str:
    """A local path for ``chart``: a directory or ``.tgz`` as given; a chart name with ``repo_url``, an
    ``oci://`` reference, a ``.tgz`` URL or a repository URL alone (the chart ``cilium`` in it) pulled
    once per process (``version``, else the newest). A chart that cannot be had is a ``PermanentError``;
    an unreachable repository a ``TemporaryError``."""
    helm_python = engine()

    ref = os.fspath(chart)
    if ref.startswith(("http://", "https://")) and not ref.endswith(".tgz") and repo_url is None:
        ref, repo_url = CHART_NAME, ref
    if not (repo_url or ref.startswith(("oci://", "http://", "https://"))):
        return ref
    key = (ref, repo_url, version)
    if key not in _pulled:
        dest = tempfile.mkdtemp(prefix="cilium-chart-")
        atexit.register(shutil.rmtree, dest, True)  # the cache lives as long as the process
        try:
            helm_python.pull(ref, repo_url=repo_url, version=version, destination=dest)
        except helm_python.HelmError as exc:
            raise classify(exc, f"cannot pull chart {ref!r} (repo {repo_url}, version {version})") from exc
        archives = sorted(Path(dest).glob("*.tgz"))
        if not archives:
            raise PermanentError(f"pulling chart {ref} {version or ''} from {repo_url} gave nothing")
        _pulled[key] = str(archives[0])
    return _pulled[key]


def load_chart(chart: str | os.PathLike[str], *, repo_url: str | None = None,
               version: str | None = None) -> helm_python.Chart:
    """The chart, loaded by the engine (see ``chart_path`` for what ``chart`` may be)."""
    helm_python = engine()

    path = chart_path(chart, repo_url=repo_url, version=version)
    try:
        return helm_python.Chart.load(path)
    except helm_python.HelmError as exc:
        raise PermanentError(f"cannot load chart {path!r}: {exc}") from exc


# ---- actions ----------------------------------------------------------------------------------------

def classify(exc: Exception, doing: str) -> PermanentError | TemporaryError:
    """Helm's error as ours: temporary when retrying can help, else permanent."""
    message = f"{doing}: {exc}"
    return TemporaryError(message) if _TEMPORARY.search(str(exc)) else PermanentError(message)


def _call(function: str, *args: Any) -> Release:
    helm_python = engine()
    _native = helm_python._native

    try:
        payload = _native.call_string(function, *args)
    except helm_python.HelmError as exc:
        raise classify(exc, f"helm {function.removeprefix('helm_')}") from exc
    result: Release = json.loads(payload)
    return result


def _options(**pairs: Any) -> str:
    return json.dumps({k: v for k, v in pairs.items() if v is not None})


def install(config: helm_python.Config, chart: helm_python.Chart, release: str, values: Mapping[str, Any], *,
            namespace: str, dry_run: bool = False, replace: bool = False) -> Release:
    """``helm install`` (``replace``: over a release whose revisions all failed)."""
    _native = engine()._native

    return _call("helm_install", config._raw(), _native.HANDLE(0), chart._raw(), None, release,
                 json.dumps(dict(values)),
                 _options(namespace=namespace, dry_run="server" if dry_run else None, replace=replace or None,
                          disable_openapi_validation=True, server_side_apply=False))


def upgrade(config: helm_python.Config, chart: helm_python.Chart, release: str, values: Mapping[str, Any], *,
            namespace: str, dry_run: bool = False) -> Release:
    """``helm upgrade`` with exactly ``values`` (``--reset-values``: nothing reused from the last one)."""
    _native = engine()._native

    return _call("helm_upgrade", config._raw(), _native.HANDLE(0), chart._raw(), None, release,
                 json.dumps(dict(values)),
                 _options(namespace=namespace, dry_run="server" if dry_run else None, reset_values=True,
                          disable_openapi_validation=True, server_side_apply="false"))


def uninstall(config: helm_python.Config, release: str, *, dry_run: bool = False) -> Release | None:
    """``helm uninstall``; None when there is no such release."""
    helm_python = engine()

    try:
        return config.uninstall(release, dry_run=dry_run)
    except helm_python.HelmNotFoundError:
        return None
    except helm_python.HelmError as exc:
        raise classify(exc, f"helm uninstall {release}") from exc


def history(config: helm_python.Config, release: str) -> list[Release]:
    """The release's revisions, oldest first; empty when it has none."""
    helm_python = engine()

    try:
        return list(config.history(release))
    except helm_python.HelmNotFoundError:
        return []
    except helm_python.HelmError as exc:
        if "not found" in str(exc):
            return []
        raise classify(exc, f"helm history {release}") from exc


def get_all(config: helm_python.Config, release: str, revision: int | None = None) -> Release:
    """``helm get all``: summary (manifest included), user values and info of one revision."""
    helm_python = engine()

    try:
        return config.get_all(release, revision=revision)
    except helm_python.HelmError as exc:
        raise classify(exc, f"helm get {release}") from exc


def render(chart: str | os.PathLike[str], values: Mapping[str, Any], *, release: str, namespace: str,
           repo_url: str | None = None, version: str | None = None) -> dict[str, str]:
    """The chart rendered offline as for an install (no cluster: ``lookup`` finds nothing)."""
    helm_python = engine()

    with load_chart(chart, repo_url=repo_url, version=version) as loaded:
        try:
            return dict(loaded.render(dict(values), name=release, namespace=namespace, is_install=True))
        except helm_python.HelmError as exc:
            raise PermanentError(f"chart {loaded.name} {loaded.version} does not render: {exc}") from exc


def manifest_objects(manifest: str) -> list[dict[str, Any]]:
    """The objects of a release manifest (``---``-separated YAML), without empty documents."""
    return [doc for doc in yaml.safe_load_all(manifest or "") if isinstance(doc, dict) and doc.get("kind")]
