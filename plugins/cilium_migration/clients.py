"""The API clients a step needs, built lazily from the Airflow connections (or given directly in tests).

``KubernetesHook(conn_id=...)`` gives the official Kubernetes clients; ``EksHook(...).conn`` the boto3
EKS client. Nothing connects until a client is first used. Clients built from connections retry API
faults as ``cilium_migration.retrying`` says (``retry``: its ``RetrySettings``); clients given directly
are used as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a client is first built: the DAG file's parse does not need urllib3
    from cilium_migration.retrying import RetrySettings


class Clients:
    """Kubernetes (core, apps, rbac, raw ApiClient) and EKS clients for one task."""

    def __init__(self, *, aws_conn_id: str = "aws_default", kubernetes_conn_id: str = "kubernetes_default",
                 region: str | None = None, api_client: Any = None, eks: Any = None,
                 retry: RetrySettings | None = None) -> None:
        self.aws_conn_id = aws_conn_id
        self.kubernetes_conn_id = kubernetes_conn_id
        self.region = region
        self._retry = retry
        self._api_client = api_client
        self._eks = eks

    @cached_property
    def retry(self) -> RetrySettings:
        from cilium_migration.retrying import RetrySettings

        return self._retry or RetrySettings.from_env()

    @cached_property
    def kube_hook(self) -> Any:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        return KubernetesHook(conn_id=self.kubernetes_conn_id)

    @cached_property
    def eks_hook(self) -> Any:
        from airflow.providers.amazon.aws.hooks.eks import EksHook

        from cilium_migration.retrying import botocore_config

        plain = EksHook(aws_conn_id=self.aws_conn_id, region_name=self.region)
        config = botocore_config(self.retry, plain.conn_config.botocore_config)  # the extra's config_kwargs
        return EksHook(aws_conn_id=self.aws_conn_id, region_name=self.region, config=config)

    @cached_property
    def api_client(self) -> Any:
        from cilium_migration.retrying import install

        if self._api_client is not None:
            return self._api_client
        return install(self.kube_hook.api_client, self.retry)

    @cached_property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    @cached_property
    def apps(self) -> Any:
        from kubernetes import client

        return client.AppsV1Api(self.api_client)

    @cached_property
    def rbac(self) -> Any:
        from kubernetes import client

        return client.RbacAuthorizationV1Api(self.api_client)

    @cached_property
    def networking(self) -> Any:
        from kubernetes import client

        return client.NetworkingV1Api(self.api_client)

    @cached_property
    def custom(self) -> Any:
        """Custom resources (CiliumEndpoints)."""
        from kubernetes import client

        return client.CustomObjectsApi(self.api_client)

    @cached_property
    def policy(self) -> Any:
        """PodDisruptionBudgets."""
        from kubernetes import client

        return client.PolicyV1Api(self.api_client)

    @cached_property
    def eks(self) -> Any:
        """The boto3 EKS client (scaling has no hook method: ``eks.update_nodegroup_config``)."""
        return self._eks if self._eks is not None else self.eks_hook.conn

    @cached_property
    def iam(self) -> Any:
        """A boto3 IAM client of the same AWS connection and retry configuration (preflight reads the
        Cilium operator's role)."""
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="iam", region_name=self.region,
                           config=self.eks_hook.config).conn

    @cached_property
    def ec2(self) -> Any:
        """A boto3 EC2 client of the same AWS connection and retry configuration (the in-place strategy
        terminates the old nodes' instances so their groups replace them)."""
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        return AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="ec2", region_name=self.region,
                           config=self.eks_hook.config).conn


def read_json(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a client read method and return the server's JSON as plain dicts (camelCase, as served)."""
    resp = call(*args, _preload_content=False, **kwargs)
    data = resp.data
    return json.loads(data) if data else None


def read_or_none(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``read_json`` but None on 404."""
    from cilium_migration.errors import is_not_found

    try:
        return read_json(call, *args, **kwargs)
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise


PAGE_SIZE = 500  # items per list request, as kubectl's --chunk-size


def items(call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item of a list call, as dicts, read in pages of ``PAGE_SIZE`` (``limit`` and ``continue``),
    so that no answer grows with the cluster. A continue token the server no longer honours (410: the
    list is too old) starts the list over, once."""
    from cilium_migration.errors import api_status

    out: list[dict[str, Any]] = []
    token: str | None = None
    restarted = False
    while True:
        try:
            page = read_json(call, *args, limit=PAGE_SIZE, _continue=token, **kwargs) or {}
        except Exception as exc:
            if api_status(exc) != 410 or token is None or restarted:
                raise
            out, token, restarted = [], None, True
            continue
        out += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue") or None
        if token is None:
            return out
