"""What the API server says about itself: /version and the discovery documents clients read first.

Legacy discovery (APIVersions, APIGroupList, APIResourceList) is always available; the aggregated
form (apidiscovery.k8s.io/v2 APIGroupDiscoveryList) is answered when the client asks for it by Accept
header, as kubectl 1.32 does, which saves it one request per group version.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from twin.resources import RESOURCE_TYPES, ResourceType

VERSION_INFO: dict[str, str] = {
    "major": "1",
    "minor": "30+",
    "gitVersion": "v1.30.14-eks-b707fbb",
    "gitCommit": "e4b3ef5c9b45ab5b2c1d2f7e1a0c6d3e8f9a1b2c",
    "gitTreeState": "clean",
    "buildDate": "2025-06-19T22:05:12Z",
    "goVersion": "go1.23.10",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# The EKS platform patch release of each Kubernetes minor the twin can report (gitVersion
# "v1.<minor>.<patch>-eks-<commit>", minor "<minor>+", as EKS's API servers answer /version).
EKS_PATCH_RELEASES: dict[int, int] = {
    23: 17, 24: 17, 25: 16, 26: 15, 27: 16, 28: 15, 29: 15, 30: 14, 31: 10, 32: 6, 33: 2, 34: 1,
}
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


def version_info(version: str) -> dict[str, str]:
    """/version for a cluster of Kubernetes ``version`` ("1.29", "1.29.3" or "v1.29.3"), as EKS reports
    it: ``major "1"``, ``minor "29+"``, ``gitVersion "v1.29.15-eks-<7 hex>"`` (the given patch, else
    EKS's current patch release of that minor). The other fields are those of ``VERSION_INFO``."""
    m = _VERSION.match(version.strip())
    if m is None:
        raise ValueError(f"not a Kubernetes version: {version!r}")
    major, minor = int(m.group(1)), int(m.group(2))
    patch = int(m.group(3)) if m.group(3) is not None else EKS_PATCH_RELEASES.get(minor, 0)
    git_version = f"v{major}.{minor}.{patch}"
    if git_version == VERSION_INFO["gitVersion"].split("-", 1)[0]:
        return dict(VERSION_INFO)
    digest = hashlib.sha1(git_version.encode()).hexdigest()
    return {**VERSION_INFO, "major": str(major), "minor": f"{minor}+",
            "gitVersion": f"{git_version}-eks-{digest[:7]}", "gitCommit": digest}


AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

# Subresources whose kind and verbs differ from the parent's.
_SUBRESOURCE_KINDS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    # subresource: (group, version, kind, verbs); "" group/version = the parent's
    "status": ("", "", "", ("get", "patch", "update")),
    "scale": ("autoscaling", "v1", "Scale", ("get", "patch", "update")),
    "eviction": ("policy", "v1", "Eviction", ("create",)),
    "log": ("", "", "Pod", ("get",)),
    "proxy": ("", "", "ServiceProxyOptions", ("create", "delete", "get", "patch", "update")),
}


def group_versions() -> dict[str, list[str]]:
    """Served versions by group, in registry order ("" is the core group)."""
    out: dict[str, list[str]] = {}
    for rt in RESOURCE_TYPES:
        versions = out.setdefault(rt.group, [])
        if rt.version not in versions:
            versions.append(rt.version)
    return out


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group_list() -> dict[str, Any]:
    groups = []
    for group, versions in group_versions().items():
        if not group:
            continue
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _singular(rt: ResourceType) -> str:
    return rt.singular or rt.kind.lower()


def _resources_of(group: str, version: str) -> list[ResourceType]:
    return [rt for rt in RESOURCE_TYPES if rt.group == group and rt.version == version]


def _sub_kind(rt: ResourceType, sub: str) -> tuple[str, str, str, tuple[str, ...]]:
    group, version, kind, verbs = _SUBRESOURCE_KINDS.get(sub, ("", "", "", ("get",)))
    return group or rt.group, version or rt.version, kind or rt.kind, verbs


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """The APIResourceList of one group version, or None when it is not served."""
    types = _resources_of(group, version)
    if not types:
        return None
    resources: list[dict[str, Any]] = []
    for rt in types:
        entry: dict[str, Any] = {"name": rt.plural, "singularName": _singular(rt), "namespaced": rt.namespaced,
                                 "kind": rt.kind, "verbs": list(rt.verbs)}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in rt.subresources:
            sub_group, sub_version, kind, verbs = _sub_kind(rt, sub)
            sub_entry: dict[str, Any] = {"name": f"{rt.plural}/{sub}", "singularName": "",
                                         "namespaced": rt.namespaced, "kind": kind, "verbs": list(verbs)}
            if (sub_group, sub_version) != (rt.group, rt.version):
                sub_entry.update(group=sub_group, version=sub_version)
            resources.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def aggregated_discovery(core: bool) -> dict[str, Any]:
    """apidiscovery.k8s.io/v2 APIGroupDiscoveryList for /api (core) or /apis (named groups)."""
    items = []
    for group, versions in group_versions().items():
        if bool(group) == core:
            continue
        vs = [{"version": v, "resources": [_aggregated_resource(rt) for rt in _resources_of(group, v)],
               "freshness": "Current"} for v in versions]
        meta: dict[str, Any] = {"creationTimestamp": None}
        if group:
            meta["name"] = group
        items.append({"metadata": meta, "versions": vs})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": items}


def _aggregated_resource(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": _singular(rt),
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    subs = []
    for sub in rt.subresources:
        group, version, kind, verbs = _sub_kind(rt, sub)
        subs.append({"subresource": sub, "responseKind": {"group": group, "version": version, "kind": kind},
                     "verbs": list(verbs)})
    if subs:
        entry["subresources"] = subs
    return entry


def wants_aggregated(accept: str) -> bool:
    """Whether the Accept header asks for aggregated discovery v2 (before any plain JSON choice)."""
    for part in accept.split(","):
        params = {p.strip() for p in part.split(";")[1:]}
        if "g=apidiscovery.k8s.io" in params and "v=v2" in params and "as=APIGroupDiscoveryList" in params:
            return True
    return False
