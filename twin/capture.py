"""Capture a live cluster as a twin scenario: ``python -m twin.capture --env-file FILE --out scenario.yaml``.

It reads the cluster through the two Airflow connections the DAG uses (``AIRFLOW_CONN_KUBERNETES_DEFAULT``
and ``AIRFLOW_CONN_AWS_DEFAULT`` lines in FILE, the format of the twin's own ``--env-file``), with only
``get``/``list`` (``deploy/rbac/capture-readonly.yaml``): one paginated list per kind, never a read per
object, and a handful of EKS calls (the cluster, its node groups and add-ons).

What it keeps is what a migration depends on: the cluster's name, region and version; every managed node
group (instance type, sizes, labels, taints) and the nodes outside them (self-managed, Karpenter, Fargate:
Node objects with their labels and taints); the EKS add-ons and their configuration values; namespaces,
service accounts, services; every Deployment, StatefulSet and DaemonSet with replicas, selectors, node
selectors, affinity, tolerations and probes; PodDisruptionBudgets. Cluster Autoscaler and Karpenter are
their Deployments.

What it never keeps: Secrets and ConfigMaps (not read at all), annotations (``last-applied-configuration``
repeats the whole object, environment included), environment values (except ``aws-node``'s documented
settings, such as prefix delegation and custom networking), ``envFrom``, commands and arguments, volumes,
image pull secrets, and a service account's secret references.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from twin.controllers.base import NODEGROUP_LABEL
from twin.scenario import BUILTIN_NAMESPACES

Obj = dict[str, Any]

PAGE_SIZE = 500
# aws-node's settings a migration depends on (the VPC CNI's documented environment variables); every
# other environment value is dropped
AWS_NODE_SETTINGS = frozenset({
    "ENABLE_PREFIX_DELEGATION", "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "ENI_CONFIG_LABEL_DEF",
    "ENI_CONFIG_ANNOTATION_DEF", "ENABLE_IPv4", "ENABLE_IPv6", "ENABLE_POD_ENI", "POD_SECURITY_GROUP_ENFORCING_MODE",
    "AWS_VPC_K8S_CNI_EXTERNALSNAT", "WARM_ENI_TARGET", "WARM_IP_TARGET", "MINIMUM_IP_TARGET",
    "WARM_PREFIX_TARGET", "DISABLE_TCP_EARLY_DEMUX", "AWS_VPC_ENI_MTU", "ENABLE_NETWORK_POLICY",
    "NETWORK_POLICY_ENFORCING_MODE",
})
CONTAINER_KEYS = ("name", "image", "ports", "resources", "readinessProbe", "livenessProbe", "startupProbe")
POD_SPEC_KEYS = ("nodeSelector", "affinity", "tolerations", "topologySpreadConstraints", "priorityClassName",
                 "serviceAccountName", "hostNetwork", "terminationGracePeriodSeconds", "dnsPolicy")
WORKLOAD_SPEC_KEYS = {
    "Deployment": ("replicas", "selector", "strategy", "minReadySeconds"),
    "StatefulSet": ("replicas", "selector", "serviceName", "podManagementPolicy", "updateStrategy",
                    "minReadySeconds"),
    "DaemonSet": ("selector", "updateStrategy", "minReadySeconds"),
}
# (list path, apiVersion, kind), in the order a scenario creates them
KINDS = (
    ("/api/v1/namespaces", "v1", "Namespace"),
    ("/api/v1/nodes", "v1", "Node"),
    ("/api/v1/serviceaccounts", "v1", "ServiceAccount"),
    ("/api/v1/services", "v1", "Service"),
    ("/apis/apps/v1/daemonsets", "apps/v1", "DaemonSet"),
    ("/apis/apps/v1/deployments", "apps/v1", "Deployment"),
    ("/apis/apps/v1/statefulsets", "apps/v1", "StatefulSet"),
    ("/apis/policy/v1/poddisruptionbudgets", "policy/v1", "PodDisruptionBudget"),
)


def _meta(obj: Obj, *, namespaced: bool = True) -> Obj:
    """Name, namespace and labels: nothing the server generated, no annotations."""
    meta = obj.get("metadata") or {}
    out: Obj = {"name": meta["name"]}
    if namespaced and meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    if meta.get("labels"):
        out["labels"] = dict(meta["labels"])
    return out


def _container(c: Obj, *, keep_env: frozenset[str]) -> Obj:
    out = {k: c[k] for k in CONTAINER_KEYS if k in c}
    env = [{"name": e["name"], "value": e["value"]} for e in c.get("env") or []
           if e.get("name") in keep_env and isinstance(e.get("value"), str)]
    if env:
        out["env"] = env
    return out


def pod_template(template: Obj, *, keep_env: frozenset[str] = frozenset()) -> Obj:
    """A pod template without secrets: containers' names, images, ports, resources and probes; placement."""
    spec = template.get("spec") or {}
    out_spec: Obj = {k: spec[k] for k in POD_SPEC_KEYS if k in spec}
    for key in ("initContainers", "containers"):
        if spec.get(key):
            out_spec[key] = [_container(c, keep_env=keep_env) for c in spec[key]]
    labels = (template.get("metadata") or {}).get("labels")
    return {"metadata": {"labels": dict(labels)} if labels else {}, "spec": out_spec}


def workload(obj: Obj, kind: str) -> Obj:
    spec = obj.get("spec") or {}
    keep_env = AWS_NODE_SETTINGS if kind == "DaemonSet" and obj["metadata"]["name"] == "aws-node" else frozenset()
    out_spec: Obj = {k: spec[k] for k in WORKLOAD_SPEC_KEYS[kind] if k in spec}
    out_spec["template"] = pod_template(spec.get("template") or {}, keep_env=keep_env)
    return {"spec": out_spec}


def service(obj: Obj) -> Obj:
    spec = obj.get("spec") or {}
    keep = ["type", "ports", "selector", "sessionAffinity"]
    if obj["metadata"]["name"] == "kubernetes" and obj["metadata"].get("namespace") == "default":
        keep += ["clusterIP", "clusterIPs"]  # the API server's own address, as pods see it
    if spec.get("clusterIP") == "None":
        keep.append("clusterIP")  # headless
    return {"spec": {k: spec[k] for k in keep if k in spec}}


def node(obj: Obj) -> Obj:
    spec = obj.get("spec") or {}
    return {"spec": {k: spec[k] for k in ("taints", "unschedulable", "providerID") if k in spec}}


def sanitized(api_version: str, kind: str, obj: Obj) -> Obj | None:
    """The scenario form of a listed object; None for what a scenario does not take (built-in namespaces,
    nodes of managed node groups: the node groups make those)."""
    meta = obj.get("metadata") or {}
    if kind == "Namespace" and meta.get("name") in BUILTIN_NAMESPACES:
        return None
    if kind == "Node" and NODEGROUP_LABEL in (meta.get("labels") or {}):
        return None
    if (meta.get("ownerReferences") or []) and kind in WORKLOAD_SPEC_KEYS:
        return None  # made by something captured already (an operator's DaemonSet)
    head: Obj = {"apiVersion": api_version, "kind": kind,
                 "metadata": _meta(obj, namespaced=kind not in ("Namespace", "Node"))}
    if kind in WORKLOAD_SPEC_KEYS:
        return {**head, **workload(obj, kind)}
    if kind == "PodDisruptionBudget":
        spec = obj.get("spec") or {}
        keep = ("minAvailable", "maxUnavailable", "selector", "unhealthyPodEvictionPolicy")
        return {**head, "spec": {k: spec[k] for k in keep if k in spec}}
    if kind == "Service":
        return {**head, **service(obj)}
    if kind == "Node":
        return {**head, **node(obj)}
    return head  # Namespace, ServiceAccount: name and labels only (never a ServiceAccount's secrets)


class CaptureError(Exception):
    """What to fix before the capture can run (said on stderr, exit status 2)."""


class Reader:
    """Paginated GETs through a Kubernetes ``ApiClient``; counts its requests."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self.requests = 0

    def items(self, path: str) -> Iterator[Obj]:
        token: str | None = None
        while True:
            query: list[tuple[str, Any]] = [("limit", PAGE_SIZE)]
            if token:
                query.append(("continue", token))
            self.requests += 1
            resp = self.api_client.call_api(path, "GET", query_params=query, auth_settings=["BearerToken"],
                                            _preload_content=False, _return_http_data_only=True)
            page = json.loads(resp.data or b"{}")
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return


def _nodegroup(ng: Obj) -> Obj:
    scaling = ng.get("scalingConfig") or {}
    out: Obj = {"name": ng["nodegroupName"], "instanceType": (ng.get("instanceTypes") or ["m5.large"])[0],
                "desired": scaling.get("desiredSize", 0), "min": scaling.get("minSize", 0),
                "max": scaling.get("maxSize", 0)}
    if ng.get("labels"):
        out["labels"] = dict(ng["labels"])
    if ng.get("taints"):
        out["taints"] = [{"key": t["key"], "value": t.get("value", ""), "effect": t["effect"]}
                         for t in ng["taints"]]
    return out


def _addon(addon: Obj) -> Obj:
    out: Obj = {"name": addon["addonName"], "version": addon.get("addonVersion")}
    if addon.get("configurationValues"):
        out["configurationValues"] = addon["configurationValues"]
    return out


class EksCalls:
    """The EKS client, counting its calls."""

    def __init__(self, eks: Any) -> None:
        self.eks = eks
        self.requests = 0

    def __call__(self, method: str, **kwargs: Any) -> Obj:
        self.requests += 1
        result: Obj = getattr(self.eks, method)(**kwargs)
        return result


def _all(call: EksCalls, method: str, key: str, **kwargs: Any) -> list[Any]:
    out: list[Any] = []
    token: str | None = None
    while True:
        page = call(method, **kwargs, **({"nextToken": token} if token else {}))
        out += page.get(key) or []
        token = page.get("nextToken")
        if not token:
            return out


def capture(api_client: Any, eks: Any, *, cluster: str | None = None) -> tuple[Obj, int]:
    """The scenario (as a plain dict) of the cluster these clients reach, and the requests it took."""
    calls = EksCalls(eks)
    if cluster is None:
        clusters = _all(calls, "list_clusters", "clusters")
        if len(clusters) != 1:
            raise CaptureError(f"give --cluster: the AWS connection sees {len(clusters)} clusters {clusters}")
        cluster = clusters[0]
    info = calls("describe_cluster", name=cluster)["cluster"]
    region = eks.meta.region_name
    groups = [calls("describe_nodegroup", clusterName=cluster, nodegroupName=name)["nodegroup"]
              for name in _all(calls, "list_nodegroups", "nodegroups", clusterName=cluster)]
    addons = [calls("describe_addon", clusterName=cluster, addonName=name)["addon"]
              for name in _all(calls, "list_addons", "addons", clusterName=cluster)]
    reader = Reader(api_client)
    objects = [o for path, api_version, kind in KINDS for item in reader.items(path)
               if (o := sanitized(api_version, kind, item)) is not None]
    scenario: Obj = {"cluster": {"name": cluster, "region": region, "version": info.get("version", "1.30")},
                     "nodegroups": [_nodegroup(g) for g in groups]}
    if addons:
        scenario["addons"] = [_addon(a) for a in addons]
    scenario["objects"] = objects
    return scenario, calls.requests + reader.requests


def read_env_file(path: Path) -> dict[str, str]:
    """KEY='VALUE' lines (the twin's ``--env-file`` format); blank lines and comments skipped."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def clients_from_connections(region: str | None) -> tuple[Any, Any]:
    """The Kubernetes ApiClient and boto3 EKS client of the connections ``kubernetes_default`` and
    ``aws_default``, built by the providers' hooks as the DAG builds them."""
    from airflow.providers.amazon.aws.hooks.eks import EksHook
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    return (KubernetesHook(conn_id="kubernetes_default").api_client,
            EksHook(aws_conn_id="aws_default", region_name=region).conn)


def to_yaml(scenario: Obj, *, source: str, seconds: float, requests: int) -> str:
    head = (f"# Captured by `python -m twin.capture` from {source} in {seconds:.1f} s ({requests} requests).\n"
            "# No Secret, ConfigMap data, environment value (but aws-node's settings) or annotation is in it.\n")
    return head + yaml.safe_dump(scenario, sort_keys=False, width=120)


def main(argv: list[str] | None = None, *, connect: Callable[[str | None], tuple[Any, Any]] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m twin.capture", description=__doc__.split("\n\n")[0])
    ap.add_argument("--env-file", type=Path, required=True,
                    help="AIRFLOW_CONN_KUBERNETES_DEFAULT and AIRFLOW_CONN_AWS_DEFAULT as KEY='VALUE' lines")
    ap.add_argument("--out", type=Path, required=True, help="the scenario YAML to write")
    ap.add_argument("--cluster", help="the EKS cluster's name (default: the only one the connection sees)")
    ap.add_argument("--region", help="the AWS region (default: the AWS connection's region_name)")
    args = ap.parse_args(argv)
    env = {k: v for k, v in read_env_file(args.env_file).items() if k.startswith("AIRFLOW_CONN_")}
    missing = {"AIRFLOW_CONN_KUBERNETES_DEFAULT", "AIRFLOW_CONN_AWS_DEFAULT"} - set(env)
    if missing:
        print(f"error: {args.env_file} lacks {', '.join(sorted(missing))}", file=sys.stderr)
        return 2
    started = time.monotonic()
    with _environment(env):
        api_client, eks = (connect or clients_from_connections)(args.region)
        try:
            scenario, requests = capture(api_client, eks, cluster=args.cluster)
        except CaptureError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    seconds = time.monotonic() - started
    args.out.write_text(to_yaml(scenario, source=scenario["cluster"]["name"], seconds=seconds, requests=requests))
    print(f"captured {scenario['cluster']['name']} ({scenario['cluster']['region']}): "
          f"{len(scenario['nodegroups'])} node groups, {len(scenario['objects'])} objects, "
          f"in {seconds:.1f} s with {requests} requests -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
