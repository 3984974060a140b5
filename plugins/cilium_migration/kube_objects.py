"""Objects of any kind, read by apiVersion, kind and name through the caller's ``ApiClient``.

Kinds are resolved through the server's discovery documents (``/api/v1``, ``/apis/<group>/<version>``),
once per reader. Errors: 429/5xx/409 -> ``TemporaryError``, any other status -> ``PermanentError`` whose
message is the server's (a 403 names the verb and resource the identity lacks).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cilium_migration.errors import PermanentError, TemporaryError, is_temporary_status

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

Obj = dict[str, Any]


@dataclass(frozen=True)
class ObjectRef:
    """Where an object lives: ``namespace`` is empty for cluster-scoped kinds."""

    api_version: str
    kind: str
    name: str
    namespace: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Resource:
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


class ObjectReader:
    """GETs through a ``kubernetes.client.ApiClient`` (its host, auth, TLS and retries)."""

    def __init__(self, api_client: ApiClient) -> None:
        self.client = api_client
        self._by_gv: dict[str, dict[str, Resource]] = {}

    def request(self, method: str, path: str, *, query: Iterable[tuple[str, str]] = (),
                missing_ok: bool = False) -> Any:
        """The decoded JSON answer; None for a 404 when ``missing_ok``."""
        from kubernetes.client.exceptions import ApiException

        try:
            resp = self.client.call_api(
                path, method, query_params=list(query),
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                _request_timeout=30)
        except ApiException as exc:
            if exc.status == 404 and missing_ok:
                return None
            message = f"{method} {path}: {exc.status} {exc.reason}: {status_message(exc.body)}"
            if is_temporary_status(exc.status) or exc.status == 409:
                raise TemporaryError(message) from exc
            raise PermanentError(message) from exc
        data = resp.data
        return json.loads(data) if data else None

    def resources(self, api_version: str) -> dict[str, Resource]:
        """Kind -> resource for one group version (top-level resources only); empty when not served."""
        if api_version not in self._by_gv:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            doc = self.request("GET", path, missing_ok=True) or {}
            self._by_gv[api_version] = {
                r["kind"]: Resource(api_version, r["kind"], r["name"], bool(r.get("namespaced")))
                for r in doc.get("resources", []) if "/" not in r["name"]}
        return self._by_gv[api_version]

    def get(self, ref: ObjectRef) -> Obj | None:
        """The object, or None when it (or its kind) does not exist."""
        res = self.resources(ref.api_version).get(ref.kind)
        if res is None:
            return None
        found: Obj | None = self.request("GET", res.path(ref.namespace or None, ref.name), missing_ok=True)
        return found


def ref_of(obj: Mapping[str, Any], default_namespace: str) -> ObjectRef:
    """The object's reference; a namespaced manifest without a namespace lands in ``default_namespace``.
    Cluster-scoped kinds are recognised by the reader (their namespace is ignored on GET)."""
    meta = obj.get("metadata") or {}
    kind = str(obj.get("kind"))
    namespace = "" if kind in CLUSTER_SCOPED else str(meta.get("namespace") or default_namespace)
    return ObjectRef(str(obj.get("apiVersion")), kind, str(meta.get("name")), namespace)


CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding",
    "CustomResourceDefinition", "PriorityClass", "IngressClass", "APIService", "RuntimeClass",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "GatewayClass",
    "CiliumClusterwideNetworkPolicy", "CiliumNode", "CiliumIdentity", "CiliumExternalWorkload",
    "CiliumLoadBalancerIPPool", "CiliumCIDRGroup",
})


def status_message(body: Any) -> str:
    """The ``message`` of a Kubernetes Status body, else the body itself."""
    try:
        return str(json.loads(body).get("message", body))
    except (TypeError, ValueError, AttributeError):
        return str(body)
