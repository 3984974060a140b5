"""``Twin``: the whole cluster twin assembled: EKS (moto), the Kubernetes API server, controllers, scenario.

Rules:
- ``start()`` brings up moto, then the API server, then the controllers; it then creates the scenario's
  Kubernetes objects (through the store), its EKS cluster and node groups (through boto3 against moto),
  and returns once the cluster has settled (``settled()``), or raises ``TwinError`` naming what is not.
- The Kubernetes API requires the twin's bearer token (random per twin). It is served over plain HTTP
  (``kube_url``) and, for client-go (kubectl, helm), over HTTPS (``kube_tls_url``) with a
  self-signed certificate; the kubeconfig and the env file name the HTTPS endpoint and carry the CA
  and token. Fake AWS credentials live in the clients and files made here, never in ``os.environ``.
- ``stop()`` is idempotent and removes the cluster from moto's per-process state, so the next twin in
  the same process can use the same cluster name.
- With ``rbac=<RBAC YAML>`` (roles and their bindings, ``twin.rbac``) a second token (``rbac_token``)
  authenticates as the subject the bindings name; its requests are authorized against those roles
  (403 Forbidden when denied). The kubeconfig and connection builders take ``token=`` to carry that
  identity instead of the admin's.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from twin import eks
from twin.admin import AdminApi
from twin.api import discovery
from twin.apiserver import ApiServer
from twin.config import Timing
from twin.controllers import core_controllers
from twin.controllers.base import NODEGROUP_LABEL, Controller, run_until
from twin.controllers.disruption import DisruptionController
from twin.controllers.kubelet import Kubelet
from twin.controllers.nodegroups import NodeGroupController
from twin.controllers.statefulsets import StatefulSetController
from twin.delays import CriticalPath, Delay
from twin.goldpinger import GoldpingerModel
from twin.rbac import Policy, load_policy
from twin.resources import DAEMONSETS, DEPLOYMENTS, NODES, PODS, STATEFULSETS
from twin.scenario import Scenario, apply_objects
from twin.store import Obj, Store


class TwinError(RuntimeError):
    """The twin could not start or did not reach the state waited for."""


class Twin:
    """A running cluster twin: ``eks_url`` (moto) and ``kube_url`` (Kubernetes API) on 127.0.0.1."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        timing: Timing | None = None,
        token: str | None = None,
        kube_port: int = 0,
        eks_port: int = 0,
        tls_port: int = 0,
        settle_timeout: float = 60.0,
        rbac: str | Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.timing = timing if timing is not None else scenario.make_timing()
        self.token = token or secrets.token_urlsafe(32)
        self.region = scenario.cluster.region
        self.cluster_name = scenario.cluster.name
        self.settle_timeout = settle_timeout
        self.store = Store()
        self.faults = scenario.make_faults()
        self.eks = eks.EksServer(region=self.region, port=eks_port, faults=self.faults, store=self.store,
                                 addon_delay_s=self.timing.pod_start_s)  # managed add-ons apply after it
        self.api = ApiServer(self.store, port=kube_port, token=self.token, faults=self.faults, tls=True)
        self.api.tls_port = tls_port
        self.api.version_info = discovery.version_info(scenario.cluster.version)  # GET /version
        self.rbac: Policy | None = None
        self.rbac_token = ""
        if rbac is not None:
            self.rbac = load_policy(rbac)
            self.rbac_token = secrets.token_urlsafe(32)
            self.api.add_user(self.rbac_token, self.rbac.username, self.rbac.allows, self.rbac.rules)
        self.controllers: list[Controller] = []
        self.goldpinger = GoldpingerModel(self.store, self.timing, self.faults)
        self.disruption: DisruptionController | None = None
        self._started = False
        self._stop_lock = threading.Lock()

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def eks_url(self) -> str:
        return self.eks.url

    @property
    def kube_url(self) -> str:
        """The Kubernetes API over plain HTTP (the official Python client sends its token here too)."""
        return self.api.url

    @property
    def kube_tls_url(self) -> str:
        """The same API over HTTPS: what the kubeconfig names (kubectl sends tokens only over TLS)."""
        return self.api.tls_url

    def start(self, *, run_controllers: bool = True) -> None:
        """Bring the twin up and wait until it has settled. With ``run_controllers=False`` the
        controllers are built but not started and nothing is waited for: the caller settles the
        cluster (``settle_by_passes``), then may ``start_controllers``."""
        if eks.cluster_exists(self.region, self.cluster_name):
            raise TwinError(
                f"an EKS cluster {self.cluster_name!r} in {self.region} already exists in this "
                "process (another Twin running?)"
            )
        self._started = True
        try:
            self.eks.start()
            self.api.add_route(
                "/_twin/",
                AdminApi(
                    store=self.store,
                    faults=self.faults,
                    request_log=lambda: self.api.request_log,
                    disruptions=self._disruptions,
                    cni_configs=self.cni_configs,
                ),
            )
            self.api.add_service_proxy(self.goldpinger.proxy_handler)
            self.api.start()
            self.controllers = self._make_controllers()
            if run_controllers:
                self.start_controllers()
            self.load_scenario()
            if run_controllers:
                self.wait_for(
                    self.settled,
                    self.settle_timeout,
                    "the cluster to settle (nodes Ready, pods Running)",
                    detail=self.unsettled,
                )
        except BaseException:
            self.stop()
            raise

    def start_controllers(self) -> None:
        for controller in self.controllers:
            controller.start()

    def settle_by_passes(self, timeout: float | None = None) -> None:
        """Run every controller's pass in turn, in this thread, until the cluster has settled: much
        faster than their threads for large scenarios (no event-driven passes over every pod)."""
        try:
            run_until(
                self.controllers,
                self.settled,
                timeout=timeout or self.settle_timeout,
                what="the cluster to settle (nodes Ready, pods Running)",
                interval=0.01,
            )
        except TimeoutError as err:
            problems = self.unsettled()
            raise TwinError(f"{err}: {'; '.join(problems[:10])}") from None

    def stop(self) -> None:
        with self._stop_lock:
            if not self._started:
                return
            self._started = False
            for controller in reversed(self.controllers):
                controller.stop()
            for step in (self.api.stop, self.eks.stop):
                try:
                    step()
                except Exception:  # noqa: BLE001 - a server that never started cannot stop
                    pass
            eks.forget_cluster(self.region, self.cluster_name)

    def __enter__(self) -> Twin:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def load_scenario(self) -> None:
        """Kubernetes objects into the store; the EKS cluster and node groups into moto through boto3."""
        apply_objects(self.store, self.scenario)
        client = self.boto3_client("eks")
        cluster = self.scenario.cluster
        eks.create_cluster(client, name=cluster.name, version=cluster.version)
        eks.set_cluster_endpoint(self.region, cluster.name, self.kube_tls_url, self.api.ca_pem)
        for ng in self.scenario.nodegroups:
            eks.create_nodegroup(
                client,
                cluster=cluster.name,
                name=ng.name,
                instance_type=ng.instanceType,
                desired=ng.desired,
                min_size=ng.min,
                max_size=ng.max,
                labels=ng.labels,
                taints=[t.eks() for t in ng.taints],
            )
        for addon in self.scenario.addons:  # EKS managed add-ons, ACTIVE from the start
            self.eks.addons.install(cluster.name, addon.name, version=addon.version,
                                    configuration=addon.configurationValues)

    # ---- assembly -------------------------------------------------------------------------------

    def _make_controllers(self) -> list[Controller]:
        """The node-group controller, the core ones, StatefulSets, the disruption controller, goldpinger."""
        args = (self.store, self.timing, self.faults)
        self.disruption = DisruptionController(*args)
        return [
            NodeGroupController(
                *args,
                region=self.region,
                cluster=self.cluster_name,
                kubernetes_version=self.scenario.cluster.version,
            ),
            *core_controllers(*args),
            StatefulSetController(*args),
            self.disruption,
            self.goldpinger,
        ]

    def _disruptions(self) -> list[Any]:
        return list(self.disruption.violations) if self.disruption is not None else []

    # ---- state ----------------------------------------------------------------------------------

    def delays(self, *, since: float | None = None, until: float | None = None) -> list[Delay]:
        """The delays the controllers imposed (``twin.delays``), those overlapping ``[since, until]``
        (epoch seconds) when given, in the order they began."""
        return self.store.delays.items(since=since, until=until)

    def critical_path(self, *, since: float | None = None, until: float | None = None) -> CriticalPath:
        """The union of the imposed delays in ``[since, until]`` (``twin.delays.critical_path``)."""
        return self.store.delays.critical_path(since=since, until=until)

    def cni_configs(self) -> dict[str, list[str]]:
        """Every node's ``/etc/cni/net.d`` as of the kubelets' last pass: node name -> sorted file
        names, ``.cilium_bak`` backups included (``twin.controllers.cni_config``)."""
        kubelet = next((c for c in self.controllers if isinstance(c, Kubelet)), None)
        return kubelet.cni_dirs.snapshot() if kubelet is not None else {}

    def settled(self) -> bool:
        return not self.unsettled()

    def unsettled(self) -> list[str]:
        """What keeps the cluster from having settled: missing nodes, NotReady nodes, pods not Running,
        workloads not rolled out. Nodes the faults block (and pods on them) are left out."""
        problems: list[str] = []
        nodes = list(self.store.iter_all(NODES))
        per_group: dict[str, int] = {}
        blocked: set[str] = set()
        for node in nodes:
            name = node["metadata"]["name"]
            group = (node["metadata"].get("labels") or {}).get(NODEGROUP_LABEL)
            per_group[group or ""] = per_group.get(group or "", 0) + 1
            if self.faults.agent_blocked(name, group):
                blocked.add(name)
            elif not node_is_ready(node):
                problems.append(f"node {name} NotReady")
        for ng in self.scenario.nodegroups:
            if ng.name not in self.faults.stuck_nodegroups and per_group.get(ng.name, 0) != ng.desired:
                problems.append(f"node group {ng.name}: {per_group.get(ng.name, 0)}/{ng.desired} nodes")
        for pod in self.store.iter_all(PODS):
            if pod["spec"].get("nodeName") in blocked:
                continue
            if (pod.get("status") or {}).get("phase") != "Running":
                meta = pod["metadata"]
                problems.append(
                    f"pod {meta.get('namespace')}/{meta['name']} "
                    f"{(pod.get('status') or {}).get('phase', 'Pending')}"
                )
        if not blocked:
            for ds in self.store.iter_all(DAEMONSETS):
                if not _rolled_out(ds, "desiredNumberScheduled", "updatedNumberScheduled", "numberReady"):
                    problems.append(
                        f"daemonset {ds['metadata']['namespace']}/{ds['metadata']['name']} not ready"
                    )
            for deploy in [*self.store.iter_all(DEPLOYMENTS), *self.store.iter_all(STATEFULSETS)]:
                if not _rolled_out(deploy, None, "updatedReplicas", "readyReplicas"):
                    meta = deploy["metadata"]
                    problems.append(f"{deploy['kind'].lower()} {meta['namespace']}/{meta['name']} not ready")
        return problems

    def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        what: str,
        detail: Callable[[], list[str]] | None = None,
    ) -> None:
        """Poll ``predicate`` until it holds; TwinError after ``timeout`` seconds, saying what was awaited."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return
            if time.monotonic() > deadline:
                hint = ""
                if detail is not None:
                    items = detail()
                    hint = (
                        ": "
                        + "; ".join(items[:10])
                        + (f" (+{len(items) - 10} more)" if len(items) > 10 else "")
                    )
                raise TwinError(f"timed out after {timeout:g}s waiting for {what}{hint}")
            time.sleep(min(0.05, max(self.timing.resync_s, 0.01)))

    # ---- clients and files ----------------------------------------------------------------------

    def boto3_client(self, service: str = "eks") -> Any:
        """A boto3 client for moto, with fake credentials and the scenario's region."""
        return self.eks.client(service)

    def kubeconfig(self, *, token: str | None = None) -> dict[str, Any]:
        """A kubeconfig for the twin's HTTPS endpoint with its CA and token (or ``token``, e.g. the
        ``rbac_token``), named as ``aws eks update-kubeconfig`` names it (the cluster ARN)."""
        arn = f"arn:aws:eks:{self.region}:{eks.account_id()}:cluster/{self.cluster_name}"
        ca = base64.b64encode(self.api.ca_pem).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [
                {"name": arn, "cluster": {"server": self.kube_tls_url, "certificate-authority-data": ca}}
            ],
            "users": [{"name": arn, "user": {"token": token or self.token}}],
            "contexts": [{"name": arn, "context": {"cluster": arn, "user": arn, "namespace": "default"}}],
            "current-context": arn,
        }

    def write_kubeconfig(self, path: str | Path, *, token: str | None = None) -> None:
        """``kubeconfig(token=token)`` as a private YAML file (the admin's when ``token`` is None)."""
        _write_private(Path(path), yaml.safe_dump(self.kubeconfig(token=token), sort_keys=False))

    def airflow_connections(self, *, token: str | None = None) -> dict[str, dict[str, Any]]:
        """The Airflow connections (JSON form) that reach this twin: aws_default and kubernetes_default
        (its kubeconfig carrying ``token`` when given)."""
        return {
            "AIRFLOW_CONN_AWS_DEFAULT": {
                "conn_type": "aws",
                "login": eks.FAKE_ACCESS_KEY,
                "password": eks.FAKE_SECRET_KEY,
                "extra": {"region_name": self.region, "endpoint_url": self.eks_url},
            },
            "AIRFLOW_CONN_KUBERNETES_DEFAULT": {
                "conn_type": "kubernetes",
                "extra": {"kube_config": self.kubeconfig(token=token), "namespace": "default"},
            },
        }

    def write_env_file(self, path: str | Path, *, token: str | None = None) -> None:
        """KEY='VALUE' lines: the Airflow connections (kubernetes_default carrying ``token`` when given, e.g.
        the ``rbac_token``), the twin's URLs and admin token, and with ``rbac=`` its RBAC user and token."""
        env = {
            key: json.dumps(conn, separators=(",", ":"))
            for key, conn in self.airflow_connections(token=token).items()
        }
        env.update(
            {
                "TWIN_KUBE_URL": self.kube_url,
                "TWIN_KUBE_TLS_URL": self.kube_tls_url,
                "TWIN_EKS_URL": self.eks_url,
                "TWIN_TOKEN": self.token,
                "TWIN_REGION": self.region,
                "TWIN_CLUSTER": self.cluster_name,
            }
        )
        if self.rbac is not None:
            env.update({"TWIN_RBAC_USER": self.rbac.username, "TWIN_RBAC_TOKEN": self.rbac_token})
        _write_private(Path(path), "".join(f"{k}='{v}'\n" for k, v in env.items()))

    def kube_client(self) -> kubernetes.client.ApiClient:
        """An official-client ApiClient for the twin (bearer token, no TLS)."""
        configuration = kubernetes.client.Configuration()
        configuration.host = self.kube_url
        bearer = f"Bearer {self.token}"
        configuration.api_key = {"BearerToken": bearer, "authorization": bearer}  # client 36 and older
        return kubernetes.client.ApiClient(configuration)


def node_is_ready(node: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def _rolled_out(obj: Obj, desired_field: str | None, updated_field: str, ready_field: str) -> bool:
    """Observed, every replica on the current template, and at least as many ready (as rollout status)."""
    status = obj.get("status") or {}
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 1):
        return False
    desired = status.get(desired_field, 0) if desired_field else obj["spec"].get("replicas", 1)
    return bool(status.get(updated_field, 0) == desired and status.get(ready_field, 0) >= desired)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(text)
