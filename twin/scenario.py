"""Scenarios: the cluster a twin starts as, written as YAML (or generated), validated by pydantic.

Schema (see ``twin/scenarios/default.yaml``):
- ``cluster``: ``name``, ``region``, ``version`` (Kubernetes, e.g. "1.30").
- ``nodegroups``: ``name``, ``instanceType``, ``desired``/``min``/``max``, ``labels``, ``taints``
  (``key``, ``value``, ``effect`` in EKS form ``NO_SCHEDULE`` or Kubernetes form ``NoSchedule``).
- ``objects``: raw Kubernetes manifests, created in order (namespaces they name are created first). A
  ``Node`` is a node outside managed node groups (self-managed, Karpenter, Fargate): name, labels and
  taints are its own; the twin gives it an address (192.168.200.x on), capacity and a kubelet, and it turns
  Ready as a group's node does, once a CNI agent runs on it.
- ``faults``: a ``twin.faults.Faults`` dict; ``timing``: ``twin.config.Timing`` fields to override.
- ``addons``: EKS managed add-ons, ACTIVE from the start: ``name``, ``version``, ``configurationValues``
  (a JSON/YAML string or a mapping). A managed ``vpc-cni`` owns ``aws-node`` (``twin.addons``); without
  it (the default) aws-node is self-managed.
- ``extends``: a scenario to start from; the keys given replace its keys (``addons`` added to ``default``).

A scenario is named by a file path, or by the name of a file in ``twin/scenarios/`` (``default``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from twin.addons import AddonError, parse_configuration, resolve_version, schema_of
from twin.api import defaults
from twin.config import Timing
from twin.eks import EKS_EFFECT, K8S_EFFECT
from twin.faults import Faults
from twin.resources import NAMESPACES, for_kind
from twin.store import ApiError, Store

SCENARIO_DIR = Path(__file__).parent / "scenarios"
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class ClusterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "dc-migrate"
    region: str = "us-west-1"
    version: str = "1.30"


class TaintSpec(BaseModel):
    """A node-group taint; ``effect`` is kept in EKS form (what ``create_nodegroup`` takes)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    value: str = ""
    effect: str = "NO_SCHEDULE"

    @field_validator("effect")
    @classmethod
    def _eks_effect(cls, effect: str) -> str:
        if effect in K8S_EFFECT:
            return effect
        if effect in EKS_EFFECT:
            return EKS_EFFECT[effect]
        raise ValueError(f"unknown taint effect {effect!r}")

    def eks(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": self.effect}


class NodeGroupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    instanceType: str = "m5.large"
    desired: int = Field(ge=0)
    min: int = Field(default=0, ge=0)
    max: int = Field(ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[TaintSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sizes_in_order(self) -> NodeGroupSpec:
        if not self.min <= self.desired <= self.max:
            raise ValueError(
                f"node group {self.name}: need min <= desired <= max, got "
                f"{self.min} <= {self.desired} <= {self.max}"
            )
        return self


class AddonSpec(BaseModel):
    """An EKS managed add-on the cluster starts with; ``configurationValues`` kept as EKS keeps it, a string."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str | None = None
    configurationValues: str = ""

    @field_validator("configurationValues", mode="before")
    @classmethod
    def _as_string(cls, value: Any) -> Any:
        return json.dumps(value) if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _valid_for_eks(self) -> AddonSpec:
        try:
            resolve_version(self.name, self.version)
            parse_configuration(self.configurationValues, schema_of(self.name))
        except AddonError as err:
            raise ValueError(f"add-on {self.name}: {err.message}") from None
        return self


class Scenario(BaseModel):
    """A whole starting cluster: EKS side, Kubernetes objects, faults and timing."""

    model_config = ConfigDict(extra="forbid")

    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    nodegroups: list[NodeGroupSpec] = Field(default_factory=list)
    objects: list[dict[str, Any]] = Field(default_factory=list)
    faults: dict[str, Any] = Field(default_factory=dict)
    timing: dict[str, float] = Field(default_factory=dict)
    addons: list[AddonSpec] = Field(default_factory=list)

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, faults: dict[str, Any]) -> dict[str, Any]:
        Faults().update(faults)  # raises ValueError on an unknown key
        return faults

    @field_validator("timing")
    @classmethod
    def _known_timings(cls, timing: dict[str, float]) -> dict[str, float]:
        unknown = set(timing) - {f.name for f in fields(Timing)}
        if unknown:
            raise ValueError(f"unknown timing fields: {sorted(unknown)}")
        return timing

    @field_validator("objects")
    @classmethod
    def _served_kinds(cls, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for obj in objects:
            try:
                for_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
            except KeyError:
                raise ValueError(
                    f"the twin does not serve {obj.get('apiVersion')} {obj.get('kind')}"
                ) from None
            if not (obj.get("metadata") or {}).get("name"):
                raise ValueError(f"a {obj.get('kind')} without metadata.name")
        return objects

    def make_faults(self) -> Faults:
        faults = Faults()
        faults.update(self.faults)
        return faults

    def make_timing(self, base: Timing | None = None) -> Timing:
        """``base`` (default ``Timing()``) with this scenario's overrides."""
        return replace(base or Timing(), **self.timing)


def scenario_from_yaml(text: str) -> Scenario:
    data = yaml.safe_load(text) or {}
    base = data.pop("extends", None)
    if base:
        data = {**load_scenario(base).model_dump(exclude_unset=True), **data}
    return Scenario.model_validate(data)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario from a YAML file, or by name from ``twin/scenarios/``; FileNotFoundError names both."""
    path = Path(name_or_path)
    if not path.is_file():
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
        raise FileNotFoundError(
            f"no scenario file {name_or_path!r} and no built-in scenario of that name "
            f"(built-in: {', '.join(known)})"
        )
    return scenario_from_yaml(path.read_text())


def apply_objects(store: Store, scenario: Scenario) -> None:
    """Create the built-in namespaces, then the objects in order (a namespace one names is created first).

    Objects get the defaults and validation an HTTP create gets, so they read back as if applied.
    """
    declared = {o["metadata"]["name"] for o in scenario.objects if o.get("kind") == "Namespace"}
    for ns in BUILTIN_NAMESPACES:
        if ns not in declared:
            _ensure_namespace(store, ns)
    unmanaged = 0
    for obj in scenario.objects:
        rt = for_kind(obj["apiVersion"], obj["kind"])
        ns = obj["metadata"].get("namespace")
        if rt.namespaced and ns:
            _ensure_namespace(store, ns)
        obj = copy.deepcopy(obj)
        if obj["kind"] == "Node" and not obj.get("status"):
            obj = unmanaged_node(obj, index=unmanaged, cluster=scenario.cluster)
            unmanaged += 1
        try:
            defaults.validate_name(rt, obj)
            defaults.prepare_for_create(rt, obj)
            store.create(rt, obj)
        except ApiError as err:
            raise ValueError(
                f"scenario object {obj['kind']} {obj['metadata']['name']}: {err.message}"
            ) from err


def unmanaged_node(obj: dict[str, Any], *, index: int, cluster: ClusterSpec) -> dict[str, Any]:
    """A scenario's Node (name, labels, taints) as a freshly registered node outside any managed group."""
    from twin.controllers.nodegroups import NODEGROUP_LABEL, node_object
    from twin.eks import NodeGroupState

    labels = dict(obj["metadata"].get("labels") or {})
    instance_type = labels.get("node.kubernetes.io/instance-type", "m5.large")
    ip = f"192.168.{200 + index // 250}.{4 + index % 250}"
    zone = labels.get("topology.kubernetes.io/zone", f"{cluster.region}a")
    node = node_object(name=obj["metadata"]["name"], ip=ip, zone=zone, region=cluster.region,
                       group=NodeGroupState(name="", instance_type=instance_type, desired=0),
                       kubernetes_version=cluster.version)
    for key in (NODEGROUP_LABEL, "eks.amazonaws.com/capacityType", "eks.amazonaws.com/nodegroup-image"):
        node["metadata"]["labels"].pop(key, None)
    node["metadata"]["labels"].update(labels)
    node["spec"] = {**node["spec"], **(obj.get("spec") or {})}
    return node


def _ensure_namespace(store: Store, name: str) -> None:
    if store.get(NAMESPACES, None, name) is None:
        store.create(
            NAMESPACES, {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}}
        )
