"""Is the Kubernetes connection talking to the EKS cluster named in the params?

Rule: EKS's ``describe_cluster`` gives the cluster's API server endpoint and its certificate authority.
The connection reaches the same cluster when it trusts that same CA and names that endpoint. Airflow
running inside the cluster reaches it through the in-cluster address (``kubernetes.default.svc`` or the
``KUBERNETES_SERVICE_HOST`` address) instead of the public endpoint: that is accepted only when the CA
matches. A connection that verifies no CA cannot prove it, so then the endpoint alone must match.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any
from urllib.parse import urlsplit

IN_CLUSTER_HOSTS = frozenset({"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "kubernetes",
                              "kubernetes.default"})


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"https://{url}")
    return (parts.hostname or "").lower(), parts.port or (80 if parts.scheme == "http" else 443)


def _pem_body(pem: str) -> str:
    """The PEM's certificate lines only, without headers or whitespace (what identifies it)."""
    return "".join(line.strip() for line in pem.splitlines() if line.strip() and not line.startswith("-----"))


def ca_fingerprint(pem: str) -> str:
    """A short fingerprint of a CA bundle, for messages."""
    return "sha256:" + hashlib.sha256(_pem_body(pem).encode()).hexdigest()[:16]


def connection_ca(api_client: Any) -> str | None:
    """The CA bundle (PEM) the client verifies the server with, or None when it verifies none."""
    conf = api_client.configuration
    if not getattr(conf, "verify_ssl", True) or not getattr(conf, "ssl_ca_cert", None):
        return None
    try:
        with open(conf.ssl_ca_cert, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None


def _in_cluster(host: str) -> bool:
    return host in IN_CLUSTER_HOSTS or host == os.environ.get("KUBERNETES_SERVICE_HOST", "").lower()


def mismatch(api_client: Any, cluster: dict[str, Any]) -> str | None:
    """Why the connection does not reach ``cluster`` (``describe_cluster``'s ``cluster``), or None."""
    server = str(api_client.configuration.host)
    endpoint = str(cluster.get("endpoint") or "")
    eks_ca = base64.b64decode((cluster.get("certificateAuthority") or {}).get("data") or "").decode(
        "utf-8", "replace")
    ours = connection_ca(api_client)
    same_endpoint = _host_port(server) == _host_port(endpoint)
    name = cluster.get("name", "?")
    if ours is not None and eks_ca and _pem_body(ours) != _pem_body(eks_ca):
        return (f"the Kubernetes connection trusts CA {ca_fingerprint(ours)} at {server}, but EKS cluster "
                f"{name} has CA {ca_fingerprint(eks_ca)} at {endpoint}: the connection points at another "
                "cluster; fix kubernetes_conn_id (or cluster_name / region)")
    if same_endpoint or (ours is not None and _in_cluster(_host_port(server)[0])):
        return None
    return (f"the Kubernetes connection talks to {server}, but EKS cluster {name}'s endpoint is {endpoint}: "
            "fix kubernetes_conn_id (or cluster_name / region)")
