"""MigrationSpec: the DAG's parameters, validated and typed.

``MigrationSpec.from_params`` is the single place input is checked; a bad value raises
``PermanentError`` naming the field and what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cilium_migration.errors import PermanentError
from cilium_migration.windows import Window
from cilium_migration.windows import from_params as window_from_params

REPO_ROOT = Path(__file__).resolve().parents[2]
TWIN_CHART_PREFIX = "twin:"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_IFACE_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,15}$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# ENI-mode differences from the VPC CNI that a run may accept as they are (cilium_migration.prerequisites)
ENI_DIFFERENCES = ("prefix_delegation", "custom_networking", "security_groups_for_pods")
# What to do about a running Cluster Autoscaler or Karpenter: refuse, or go on because the operator
# has kept it off the node groups in play for the window
AUTOSCALER_MODES = ("refuse", "acknowledged")
# The runbook's two strategies: new Cilium nodes beside the old ones, or Cilium beside aws-node on the same
# nodes (each has its DAG; the param ``strategy`` is fixed per DAG)
NODE_POOL, IN_PLACE = "node-pool", "in-place"
STRATEGIES = (NODE_POOL, IN_PLACE)


@dataclass(frozen=True)
class Timeouts:
    """How long each wait may take, in seconds."""

    nodegroup: float = 1800.0  # node group ACTIVE at size, nodes registered or gone
    nodes_ready: float = 900.0  # new nodes Ready with the taint gone
    rollout: float = 600.0  # DaemonSet / Deployment rollouts
    mesh: float = 300.0  # goldpinger mesh healthy
    eviction: float = 600.0  # one batch: evictions accepted (429 retried) and replacements Ready
    approval: float = 86400.0  # a human's answer
    poll_interval: float = 10.0  # between checks
    ping_tolerance: float = 30.0  # how stale a goldpinger PingTime may be, before the check started

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Timeouts:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PermanentError(f"timeouts: unknown key(s) {unknown}; known keys are {sorted(known)}")
        values: dict[str, float] = {}
        for key, value in data.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise PermanentError(f"timeouts.{key}: must be a positive number of seconds, got {value!r}")
            values[key] = float(value)
        return cls(**values)


@dataclass(frozen=True)
class MigrationSpec:
    """What one run migrates, and how."""

    cluster_name: str
    region: str
    old_nodegroups: tuple[str, ...] = ("ng-1",)
    new_nodegroup: str = "ng-cilium"
    new_node_count: int = 3
    cilium_chart: str = "twin:cilium"
    cilium_version: str | None = None
    cilium_values: Mapping[str, Any] = field(default_factory=dict)
    egress_masquerade_interface: str = "eth0"
    goldpinger_namespace: str = "default"
    deploy_goldpinger: bool = True
    eviction_batch_size: int = 5
    force_evictions: bool = False
    allow_network_policies: bool = False
    accept_eni_differences: tuple[str, ...] = ()
    check_operator_iam: bool = True
    autoscaler: str = "refuse"
    timeouts: Timeouts = field(default_factory=Timeouts)
    dry_run: bool = False
    aws_conn_id: str = "aws_default"
    kubernetes_conn_id: str = "kubernetes_default"
    window: Window | None = None  # the maintenance window of the disruptive steps (None: any time)
    strategy: str = NODE_POOL
    restart_namespaces: tuple[str, ...] = ("kube-system",)  # in place: restarted first, in this order

    release: str = "cilium"
    cilium_namespace: str = "kube-system"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MigrationSpec:
        """Validate the DAG run's params; unknown keys are ignored (Airflow adds its own)."""
        p = dict(params)

        def get(name: str, default: Any = None) -> Any:
            value = p.get(name)
            return default if value is None else value

        cluster = _name("cluster_name", get("cluster_name", ""))
        region = get("region", "")
        if not isinstance(region, str) or not _REGION_RE.match(region):
            raise PermanentError(f"region: {region!r} is not an AWS region name such as 'us-west-1'")
        old = get("old_nodegroups", ["ng-1"])
        if isinstance(old, str):
            old = [old]
        if not isinstance(old, list | tuple) or not old:
            raise PermanentError("old_nodegroups: give at least one node group name (a list)")
        old_groups = tuple(_name("old_nodegroups", g) for g in old)
        strategy = _choice("strategy", get("strategy", NODE_POOL), STRATEGIES)
        new = _name("new_nodegroup", get("new_nodegroup", "ng-cilium"))
        if new in old_groups and strategy == NODE_POOL:
            raise PermanentError(f"new_nodegroup: {new!r} is also listed in old_nodegroups")
        namespaces = get("restart_namespaces", ["kube-system"])
        if isinstance(namespaces, str):
            namespaces = [namespaces]
        if not isinstance(namespaces, list | tuple) or not all(
                isinstance(n, str) and _DNS_LABEL_RE.match(n) for n in namespaces):
            raise PermanentError(f"restart_namespaces: {namespaces!r} must be a list of namespace names, "
                                 "restarted first in that order")
        count = _int("new_node_count", get("new_node_count", 3), minimum=1)
        chart = get("cilium_chart", "twin:cilium")
        if not isinstance(chart, str) or not chart.strip():
            raise PermanentError("cilium_chart: give a chart path, 'twin:<name>', an oci:// or repo URL")
        version = get("cilium_version")
        if version is not None and not isinstance(version, str):
            raise PermanentError(f"cilium_version: must be a string such as '1.16.5', got {version!r}")
        values = get("cilium_values", {})
        if not isinstance(values, Mapping):
            raise PermanentError("cilium_values: must be an object (Helm values overrides)")
        iface = get("egress_masquerade_interface", "eth0")
        if not isinstance(iface, str) or not _IFACE_RE.match(iface):
            raise PermanentError(f"egress_masquerade_interface: {iface!r} is not a network interface name")
        gp_ns = get("goldpinger_namespace", "default")
        if not isinstance(gp_ns, str) or not _DNS_LABEL_RE.match(gp_ns):
            raise PermanentError(f"goldpinger_namespace: {gp_ns!r} is not a namespace name")
        return cls(
            cluster_name=cluster, region=region, old_nodegroups=old_groups, new_nodegroup=new,
            new_node_count=count, cilium_chart=chart.strip(), cilium_version=version or None,
            cilium_values=dict(values), egress_masquerade_interface=iface, goldpinger_namespace=gp_ns,
            deploy_goldpinger=_bool("deploy_goldpinger", get("deploy_goldpinger", True)),
            eviction_batch_size=_int("eviction_batch_size", get("eviction_batch_size", 5), minimum=1),
            force_evictions=_bool("force_evictions", get("force_evictions", False)),
            allow_network_policies=_bool("allow_network_policies", get("allow_network_policies", False)),
            accept_eni_differences=_choices("accept_eni_differences", get("accept_eni_differences", []),
                                            ENI_DIFFERENCES),
            check_operator_iam=_bool("check_operator_iam", get("check_operator_iam", True)),
            autoscaler=_choice("autoscaler", get("autoscaler", "refuse"), AUTOSCALER_MODES),
            timeouts=Timeouts.from_mapping(get("timeouts", {})),
            dry_run=_bool("dry_run", get("dry_run", False)),
            aws_conn_id=_name("aws_conn_id", get("aws_conn_id", "aws_default")),
            kubernetes_conn_id=_name("kubernetes_conn_id", get("kubernetes_conn_id", "kubernetes_default")),
            window=window_from_params({"window_cron": get("window_cron", ""),
                                       "window_minutes": get("window_minutes", 120),
                                       "window_timezone": get("window_timezone", "UTC")}),
            strategy=strategy, restart_namespaces=tuple(dict.fromkeys(namespaces)),
        )

    @property
    def in_place(self) -> bool:
        """Cilium beside aws-node on the same nodes (no new node group, no fence)."""
        return self.strategy == IN_PLACE

    @property
    def chart_ref(self) -> str:
        """The chart as Helm loads it: ``twin:<name>`` resolves to ``twin/charts/<name>`` in this checkout."""
        return resolve_chart(self.cilium_chart)

    @property
    def dry_run_arg(self) -> str | None:
        """The Kubernetes ``dryRun`` query value for writes: "All" in a dry run, else None."""
        return "All" if self.dry_run else None


def resolve_chart(ref: str) -> str:
    """``twin:cilium`` -> absolute path of ``twin/charts/cilium``; anything else unchanged."""
    if ref.startswith(TWIN_CHART_PREFIX):
        return str(REPO_ROOT / "twin" / "charts" / ref[len(TWIN_CHART_PREFIX):])
    return ref


def _name(field_name: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise PermanentError(f"{field_name}: {value!r} is not a valid name (letters, digits, '-', '_')")
    return value


def _int(field_name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PermanentError(f"{field_name}: must be an integer >= {minimum}, got {value!r}")
    return value


def _choice(field_name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise PermanentError(f"{field_name}: {value!r} is not one of {list(allowed)}")
    return str(value)


def _choices(field_name: str, value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or any(v not in allowed for v in value):
        raise PermanentError(f"{field_name}: {value!r} must be a list of {list(allowed)}")
    return tuple(dict.fromkeys(value))


def _bool(field_name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise PermanentError(f"{field_name}: must be true or false, got {value!r}")
    return value
