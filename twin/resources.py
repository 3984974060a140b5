"""The resource types the twin serves, declared as data (group, version, plural, kind, scope)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ResourceType:
    """One REST resource, as the API server's discovery documents describe it."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")
    singular: str = ""
    categories: tuple[str, ...] = field(default=())

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Storage key, unique across groups: 'pods', 'daemonsets.apps', ..."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_spec_generation(self) -> bool:
        """Whether spec changes bump metadata.generation (objects with a spec)."""
        return self.kind not in _NO_SPEC_KINDS


_NO_SPEC_KINDS = frozenset(
    {"ConfigMap", "Secret", "ServiceAccount", "Role", "ClusterRole", "RoleBinding",
     "ClusterRoleBinding", "Event", "Endpoints", "Lease"}
)

_ALL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    # core/v1
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",),
                 subresources=("status",), verbs=_ALL),
    ResourceType("", "v1", "nodes", "Node", namespaced=False, short_names=("no",),
                 subresources=("status",), verbs=_ALL),
    ResourceType("", "v1", "pods", "Pod", short_names=("po",),
                 subresources=("status", "eviction", "log"), verbs=_ALL, categories=("all",)),
    ResourceType("", "v1", "services", "Service", short_names=("svc",),
                 subresources=("status", "proxy"), verbs=_ALL, categories=("all",)),
    ResourceType("", "v1", "endpoints", "Endpoints", short_names=("ep",), verbs=_ALL),
    ResourceType("", "v1", "configmaps", "ConfigMap", short_names=("cm",), verbs=_ALL),
    ResourceType("", "v1", "secrets", "Secret", verbs=_ALL),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",), verbs=_ALL),
    ResourceType("", "v1", "events", "Event", short_names=("ev",), verbs=_ALL),
    # apps/v1
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", short_names=("ds",),
                 subresources=("status",), verbs=_ALL, categories=("all",)),
    ResourceType("apps", "v1", "deployments", "Deployment", short_names=("deploy",),
                 subresources=("status", "scale"), verbs=_ALL, categories=("all",)),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",),
                 subresources=("status", "scale"), verbs=_ALL, categories=("all",)),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", short_names=("sts",),
                 subresources=("status", "scale"), verbs=_ALL, categories=("all",)),
    ResourceType("apps", "v1", "controllerrevisions", "ControllerRevision", verbs=_ALL),
    # policy/v1
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short_names=("pdb",),
                 subresources=("status",), verbs=_ALL),
    # rbac
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", verbs=_ALL),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", verbs=_ALL),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole",
                 namespaced=False, verbs=_ALL),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
                 namespaced=False, verbs=_ALL),
    # networking
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short_names=("netpol",),
                 verbs=_ALL),
    # coordination (helm and controllers touch leases)
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", verbs=_ALL),
    # apiextensions: CRDs are accepted and stored (Cilium's chart creates none; the operator does)
    ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
                 namespaced=False, short_names=("crd",), subresources=("status",), verbs=_ALL),
    # the VPC CNI's custom networking CRD, installed with aws-node on every EKS cluster (preflight lists it)
    ResourceType("crd.k8s.amazonaws.com", "v1alpha1", "eniconfigs", "ENIConfig", namespaced=False, verbs=_ALL),
    # cilium.io/v2: what the DAG reads
    ResourceType("cilium.io", "v2", "ciliumnodes", "CiliumNode", namespaced=False, short_names=("cn",),
                 verbs=_ALL, categories=("cilium",)),
    ResourceType("cilium.io", "v2", "ciliumendpoints", "CiliumEndpoint", short_names=("cep",),
                 subresources=("status",), verbs=_ALL, categories=("cilium",)),
    ResourceType("cilium.io", "v2", "ciliumnetworkpolicies", "CiliumNetworkPolicy", short_names=("cnp",),
                 subresources=("status",), verbs=_ALL, categories=("cilium",)),
)

BY_KEY: dict[str, ResourceType] = {r.key: r for r in RESOURCE_TYPES}
BY_GVR: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in RESOURCE_TYPES}
BY_KIND: dict[str, ResourceType] = {r.kind: r for r in RESOURCE_TYPES}

# Short aliases used by controllers and tests.
NAMESPACES = BY_KEY["namespaces"]
NODES = BY_KEY["nodes"]
PODS = BY_KEY["pods"]
SERVICES = BY_KEY["services"]
CONFIGMAPS = BY_KEY["configmaps"]
SECRETS = BY_KEY["secrets"]
SERVICEACCOUNTS = BY_KEY["serviceaccounts"]
EVENTS = BY_KEY["events"]
DAEMONSETS = BY_KEY["daemonsets.apps"]
DEPLOYMENTS = BY_KEY["deployments.apps"]
REPLICASETS = BY_KEY["replicasets.apps"]
STATEFULSETS = BY_KEY["statefulsets.apps"]
PDBS = BY_KEY["poddisruptionbudgets.policy"]
NETWORKPOLICIES = BY_KEY["networkpolicies.networking.k8s.io"]
CILIUMNODES = BY_KEY["ciliumnodes.cilium.io"]
CILIUMENDPOINTS = BY_KEY["ciliumendpoints.cilium.io"]


def for_kind(api_version: str, kind: str) -> ResourceType:
    """The resource type for an object's apiVersion and kind; KeyError when the twin does not serve it."""
    group, _, version = api_version.rpartition("/")
    for r in RESOURCE_TYPES:
        if r.kind == kind and r.group == group and r.version == version:
            return r
    raise KeyError(f"{api_version} {kind}")
