"""The stand-in Cilium chart (twin/charts/cilium) against what the real cilium 1.16.5 chart renders.

Rendering (the Helm engine, no cluster) with the migration's values (``runbook_values``): the same 23
objects as the real chart (kinds and names listed below, checked against the real chart when this
stand-in was written); labels, selectors and placement of the agent, cilium-envoy, the operator and
Hubble Relay, with the values' affinity / nodeSelector / tolerations; the RBAC rules, including the
operator's pods ``delete`` that follows the unmanaged-pod watcher; Hubble's certificates issued at render
and signed by the chart's CA; cilium-config; the values the real chart refuses.

The Kubernetes version: the engine rendering for 1.29 gives the AppArmor pod annotations, for 1.30 and
above ``securityContext.appArmorProfile``; a real Helm install against the twin's API server renders for
the version its ``/version`` reports, which is the scenario's ``cluster.version``. A Helm upgrade keeps
the CA (``lookup`` of Secret cilium-ca) and re-issues the Hubble certificates.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cilium_migration import cilium, helm
from cilium_migration.errors import PermanentError, TemporaryError

CHART = Path(__file__).resolve().parents[2] / "twin" / "charts" / "cilium"
NS = "kube-system"

# What the real cilium 1.16.5 chart renders with runbook_values(cluster_name="dc-migrate",
# region="us-west-1"), sorted by (kind, name).
REAL_CHART_OBJECTS = sorted([
    ("ServiceAccount", "cilium"), ("ServiceAccount", "cilium-envoy"), ("ServiceAccount", "cilium-operator"),
    ("ServiceAccount", "hubble-relay"),
    ("Secret", "cilium-ca"), ("Secret", "hubble-server-certs"), ("Secret", "hubble-relay-client-certs"),
    ("ConfigMap", "cilium-config"), ("ConfigMap", "cilium-envoy-config"), ("ConfigMap", "hubble-relay-config"),
    ("ClusterRole", "cilium"), ("ClusterRole", "cilium-operator"),
    ("ClusterRoleBinding", "cilium"), ("ClusterRoleBinding", "cilium-operator"),
    ("Role", "cilium-config-agent"), ("RoleBinding", "cilium-config-agent"),
    ("Service", "cilium-envoy"), ("Service", "hubble-relay"), ("Service", "hubble-peer"),
    ("DaemonSet", "cilium"), ("DaemonSet", "cilium-envoy"),
    ("Deployment", "cilium-operator"), ("Deployment", "hubble-relay"),
])
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}
APPARMOR = "container.apparmor.security.beta.kubernetes.io/"


def runbook(**overrides: Any) -> dict[str, Any]:
    return cilium.runbook_values(cluster_name="dc-migrate", region="us-west-1", overrides=overrides)


def watcher(restart: bool, interval: int | None = None) -> dict[str, Any]:
    upw: dict[str, Any] = {"restart": restart}
    if interval is not None:
        upw["intervalSeconds"] = interval
    return runbook(operator={"unmanagedPodWatcher": upw})


def by_kind_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def rendered(values: dict[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    return by_kind_name(cilium.render(CHART, runbook() if values is None else values))


def render_for(kube_version: str, values: dict[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """The chart rendered offline as for an install on a cluster of ``kube_version`` (the engine's
    ``kube_version`` option, which sets .Capabilities.KubeVersion; helm_python's Python wrapper does not
    pass it)."""
    import helm_python
    from helm_python import _native

    options = {"name": "cilium", "namespace": NS, "is_install": True, "kube_version": kube_version}
    with helm_python.Chart.load(str(CHART)) as chart:
        files = json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(values or runbook()),
                                                json.dumps(options)))
    return by_kind_name([o for path in sorted(files) if not path.endswith("NOTES.txt")
                         for o in helm.manifest_objects(files[path])])


def required_node_terms(affinity: dict[str, Any]) -> list[dict[str, Any]]:
    return affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


def node_affinity(*expressions: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": list(expressions)}]}}}


FENCE = {"key": "cni", "operator": "NotIn", "values": ["aws-cni"]}
NO_SCHEDULE = {"key": "cilium.io/no-schedule", "operator": "NotIn", "values": ["true"]}


# ---- the objects -----------------------------------------------------------------------------------

def test_runbook_values_render_the_real_charts_objects() -> None:
    objects = cilium.render(CHART, runbook())
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == REAL_CHART_OBJECTS
    for o in objects:
        if o["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in o["metadata"]
        else:
            assert o["metadata"]["namespace"] == NS


def test_helm_install_renders_the_same_objects() -> None:
    import helm_python

    with helm_python.Config(kube_apiserver="http://127.0.0.1:9", storage_driver="memory", namespace=NS) as cfg:
        release = cfg.install(str(CHART), "cilium", runbook(), dry_run="client", namespace=NS)
    engine = [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(release["manifest"]) if d]
    assert sorted(engine) == REAL_CHART_OBJECTS
    assert engine.index(("ServiceAccount", "cilium")) < engine.index(("DaemonSet", "cilium")), "Helm's order"


def test_agent_daemonset_carries_the_runbook_affinity_and_cilium_labels() -> None:
    ds = rendered()[("DaemonSet", "cilium")]
    labels = {"k8s-app": "cilium", "app.kubernetes.io/name": "cilium-agent", "app.kubernetes.io/part-of": "cilium"}
    assert labels.items() <= ds["metadata"]["labels"].items()
    pod = ds["spec"]["template"]
    assert labels.items() <= pod["metadata"]["labels"].items()
    assert ds["spec"]["selector"]["matchLabels"] == {"k8s-app": "cilium"}
    spec = pod["spec"]
    assert spec["affinity"]["nodeAffinity"] == runbook()["affinity"]["nodeAffinity"]
    assert spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == [
        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"k8s-app": "cilium"}}}], \
        "the chart's default anti-affinity stays beside the runbook's node affinity (Helm merges maps)"
    assert spec["hostNetwork"] is True
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["serviceAccountName"] == "cilium"
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}
    assert [c["name"] for c in spec["initContainers"]] == [
        "config", "mount-cgroup", "apply-sysctl-overwrites", "mount-bpf-fs", "clean-cilium-state",
        "install-cni-binaries"]
    assert spec["containers"][0]["image"].startswith("quay.io/cilium/cilium:v1.16.5@sha256:")
    assert {"envoy-sockets", "hubble-tls"} <= {v["name"] for v in spec["volumes"]}


def test_envoy_daemonset_configmap_service_and_account() -> None:
    objs = rendered(runbook(envoy={"affinity": None}))  # the chart's own envoy.affinity
    ds = objs[("DaemonSet", "cilium-envoy")]
    assert ds["spec"]["selector"]["matchLabels"] == {"k8s-app": "cilium-envoy"}
    labels = {"k8s-app": "cilium-envoy", "name": "cilium-envoy", "app.kubernetes.io/name": "cilium-envoy",
              "app.kubernetes.io/part-of": "cilium"}
    assert ds["spec"]["template"]["metadata"]["labels"] == labels
    spec = ds["spec"]["template"]["spec"]
    assert spec["affinity"] == {
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"k8s-app": "cilium-envoy"}}}]},
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"k8s-app": "cilium"}}}]},
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [NO_SCHEDULE]}]}},
    }
    assert spec["tolerations"] == [{"operator": "Exists"}], "envoy tolerates everything"
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["hostNetwork"] is True and spec["serviceAccountName"] == "cilium-envoy"
    assert [c["name"] for c in spec["containers"]] == ["cilium-envoy"]
    assert spec["containers"][0]["image"].startswith("quay.io/cilium/cilium-envoy:v1.30.8-")
    config = next(v for v in spec["volumes"] if v["name"] == "envoy-config")
    assert config["configMap"]["name"] == "cilium-envoy-config"
    fenced = rendered()[("DaemonSet", "cilium-envoy")]["spec"]["template"]["spec"]["affinity"]
    given = runbook().get("envoy", {}).get("affinity", {}).get("nodeAffinity", spec["affinity"]["nodeAffinity"])
    assert fenced["nodeAffinity"] == given, "the migration's envoy.affinity, when it gives one"
    assert fenced["podAffinity"] == spec["affinity"]["podAffinity"], "the chart's pod affinity stays"
    bootstrap = json.loads(objs[("ConfigMap", "cilium-envoy-config")]["data"]["bootstrap-config.json"])
    assert "staticResources" in bootstrap
    svc = objs[("Service", "cilium-envoy")]
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["selector"] == {"k8s-app": "cilium-envoy"}
    assert svc["spec"]["ports"][0]["targetPort"] == "envoy-metrics"
    assert objs[("ConfigMap", "cilium-config")]["data"]["external-envoy-proxy"] == "true"


@pytest.mark.parametrize("overrides", [
    pytest.param({"envoy": {"enabled": False}}, id="envoy-disabled"),
    pytest.param({"l7Proxy": False}, id="no-l7-proxy"),
])
def test_envoy_off_renders_no_envoy(overrides: dict[str, Any]) -> None:
    objs = rendered(runbook(**overrides))
    assert not [k for k in objs if "envoy" in k[1]]
    assert objs[("ConfigMap", "cilium-config")]["data"]["external-envoy-proxy"] == "false"
    agent = objs[("DaemonSet", "cilium")]["spec"]["template"]["spec"]
    assert "envoy-sockets" not in {v["name"] for v in agent["volumes"]}


def test_every_component_takes_placement_from_its_values() -> None:
    """envoy.affinity, operator.affinity/nodeSelector/tolerations, hubble.relay.affinity/tolerations: a
    node-affinity fence given in values lands in each pod template, beside the chart's pod (anti-)affinity."""
    values = runbook(
        envoy={"affinity": node_affinity(NO_SCHEDULE, FENCE)},
        operator={"affinity": node_affinity(FENCE), "nodeSelector": {"role": "system"},
                  "tolerations": [{"key": "dedicated", "operator": "Exists"}]},
        hubble={"relay": {"affinity": node_affinity(FENCE), "tolerations": [{"operator": "Exists"}]}},
    )
    objs = rendered(values)
    envoy = objs[("DaemonSet", "cilium-envoy")]["spec"]["template"]["spec"]["affinity"]
    assert required_node_terms(envoy) == [{"matchExpressions": [NO_SCHEDULE, FENCE]}]
    assert {"podAffinity", "podAntiAffinity"} <= set(envoy)
    operator = objs[("Deployment", "cilium-operator")]["spec"]["template"]["spec"]
    assert required_node_terms(operator["affinity"]) == [{"matchExpressions": [FENCE]}]
    assert "podAntiAffinity" in operator["affinity"]
    assert operator["nodeSelector"] == {"kubernetes.io/os": "linux", "role": "system"}
    assert operator["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    relay = objs[("Deployment", "hubble-relay")]["spec"]["template"]["spec"]
    assert required_node_terms(relay["affinity"]) == [{"matchExpressions": [FENCE]}]
    assert relay["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0][
        "labelSelector"] == {"matchLabels": {"k8s-app": "cilium"}}, "relay stays beside an agent"
    assert relay["tolerations"] == [{"operator": "Exists"}]
    assert relay["nodeSelector"] == {"kubernetes.io/os": "linux"}


def test_operator_deployment() -> None:
    objs = rendered()
    dep = objs[("Deployment", "cilium-operator")]
    assert {"io.cilium/app": "operator", "name": "cilium-operator"}.items() <= dep["metadata"]["labels"].items()
    assert dep["spec"]["selector"]["matchLabels"] == {"io.cilium/app": "operator", "name": "cilium-operator"}
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == "100%", "one replica: 100%"
    spec = dep["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["tolerations"] == [{"operator": "Exists"}]
    container = spec["containers"][0]
    assert container["image"].startswith("quay.io/cilium/operator-aws:v1.16.5@sha256:"), "ENI runs operator-aws"
    assert container["command"] == ["cilium-operator-aws"]
    assert "AWS_ACCESS_KEY_ID" in {e["name"] for e in container["env"]}
    assert "annotations" not in objs[("ServiceAccount", "cilium-operator")]["metadata"]

    irsa = rendered(runbook(eni={"iamRole": "arn:aws:iam::123456789012:role/cilium-operator"},
                            operator={"replicas": 2}))
    dep = irsa[("Deployment", "cilium-operator")]
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == "50%"
    assert "AWS_ACCESS_KEY_ID" not in {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert irsa[("ServiceAccount", "cilium-operator")]["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/cilium-operator"}


def test_relay_and_peer_service() -> None:
    objs = rendered()
    relay = objs[("Deployment", "hubble-relay")]
    assert relay["spec"]["selector"]["matchLabels"] == {"k8s-app": "hubble-relay"}
    spec = relay["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "hubble-relay" and spec["automountServiceAccountToken"] is False
    tls = next(v for v in spec["volumes"] if v["name"] == "tls")
    assert tls["projected"]["sources"][0]["secret"]["name"] == "hubble-relay-client-certs"
    config = yaml.safe_load(objs[("ConfigMap", "hubble-relay-config")]["data"]["config.yaml"])
    assert config["peer-service"] == "hubble-peer.kube-system.svc.cluster.local.:443"
    assert config["disable-server-tls"] is True and "disable-client-tls" not in config
    peer = objs[("Service", "hubble-peer")]
    assert peer["spec"]["selector"] == {"k8s-app": "cilium"} and peer["spec"]["ports"][0]["port"] == 443
    assert peer["spec"]["internalTrafficPolicy"] == "Local"
    assert objs[("Service", "hubble-relay")]["spec"]["ports"][0] == {"protocol": "TCP", "port": 80,
                                                                     "targetPort": "grpc"}


def test_relay_off_renders_no_relay() -> None:
    names = set(rendered(runbook(hubble={"relay": {"enabled": False}})))
    assert not {n for n in names if "relay" in n[1]}
    assert {("Service", "hubble-peer"), ("Secret", "cilium-ca"), ("Secret", "hubble-server-certs")} <= names


def test_hubble_without_tls_issues_no_certificates() -> None:
    objs = rendered(runbook(hubble={"tls": {"enabled": False}}))
    assert not [k for k in objs if k[0] == "Secret"]
    assert objs[("Service", "hubble-peer")]["spec"]["ports"][0]["port"] == 80
    assert objs[("ConfigMap", "cilium-config")]["data"]["hubble-disable-tls"] == "true"
    config = yaml.safe_load(objs[("ConfigMap", "hubble-relay-config")]["data"]["config.yaml"])
    assert config["disable-client-tls"] is True


# ---- RBAC ------------------------------------------------------------------------------------------

def test_agent_rbac() -> None:
    objs = rendered()
    role = objs[("Role", "cilium-config-agent")]
    assert role["metadata"]["namespace"] == NS
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]
    binding = objs[("RoleBinding", "cilium-config-agent")]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "cilium-config-agent"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "cilium", "namespace": NS}]
    agent = objs[("ClusterRole", "cilium")]["rules"]
    assert {"apiGroups": [""], "resources": ["namespaces", "services", "pods", "endpoints", "nodes"],
            "verbs": ["get", "list", "watch"]} in agent
    assert {"apiGroups": ["cilium.io"], "resources": ["ciliumidentities", "ciliumendpoints", "ciliumnodes"],
            "verbs": ["create"]} in agent
    assert not [r for r in agent if "*" in r["verbs"] or "secrets" in r["resources"]], "no wildcard, no secrets"
    for name in ("cilium", "cilium-operator"):
        crb = objs[("ClusterRoleBinding", name)]
        assert crb["roleRef"]["name"] == name
        assert crb["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NS}]
    assert "rules" in objs[("ClusterRole", "cilium-operator")]


@pytest.mark.parametrize(("values", "pod_verbs"), [
    pytest.param(watcher(False), ["get", "list", "watch"], id="watcher-off"),
    pytest.param(watcher(True), ["get", "list", "watch", "delete"], id="watcher-on-deletes-pods"),
    pytest.param(watcher(True, 0), ["get", "list", "watch"], id="watcher-on-interval-0"),
])
def test_operator_may_delete_pods_only_with_the_unmanaged_pod_watcher(values: dict[str, Any],
                                                                      pod_verbs: list[str]) -> None:
    rules = rendered(values)[("ClusterRole", "cilium-operator")]["rules"]
    assert rules[0] == {"apiGroups": [""], "resources": ["pods"], "verbs": pod_verbs}
    assert {"apiGroups": [""], "resources": ["nodes", "nodes/status"], "verbs": ["patch"]} in rules
    assert {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cilium-config"],
            "verbs": ["patch"]} in rules


# ---- certificates ----------------------------------------------------------------------------------

def pem(secret: dict[str, Any], key: str) -> bytes:
    return base64.b64decode(secret["data"][key])


def cert(secret: dict[str, Any], key: str = "tls.crt") -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem(secret, key))


def common_name(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def signed_by(child: x509.Certificate, ca: x509.Certificate) -> bool:
    public = ca.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert child.signature_hash_algorithm is not None
    public.verify(child.signature, child.tbs_certificate_bytes, padding.PKCS1v15(), child.signature_hash_algorithm)
    return child.issuer == ca.subject


def test_hubble_certificates_are_issued_at_render_and_signed_by_the_chart_ca() -> None:
    objs = rendered()
    ca_secret = objs[("Secret", "cilium-ca")]
    assert set(ca_secret["data"]) == {"ca.crt", "ca.key"}
    ca = cert(ca_secret, "ca.crt")
    assert common_name(ca.subject) == "Cilium CA"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server, client = objs[("Secret", "hubble-server-certs")], objs[("Secret", "hubble-relay-client-certs")]
    for secret, cn in ((server, "*.dc-migrate-us-west-1-eksctl-io.hubble-grpc.cilium.io"),
                       (client, "*.hubble-relay.cilium.io")):
        assert secret["type"] == "kubernetes.io/tls"
        assert secret["data"]["ca.crt"] == ca_secret["data"]["ca.crt"]
        assert common_name(cert(secret).subject) == cn
        assert signed_by(cert(secret), ca)
    assert rendered()[("Secret", "cilium-ca")]["data"] != ca_secret["data"], \
        "offline (no lookup) every render makes a new CA"


def test_a_ca_given_in_values_signs_the_certificates() -> None:
    first = rendered()[("Secret", "cilium-ca")]["data"]
    objs = rendered(runbook(tls={"ca": {"cert": first["ca.crt"], "key": first["ca.key"]}}))
    assert objs[("Secret", "cilium-ca")]["data"] == first
    assert signed_by(cert(objs[("Secret", "hubble-server-certs")]),
                     x509.load_pem_x509_certificate(base64.b64decode(first["ca.crt"])))


# ---- cilium-config ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "interval"), [
    pytest.param(watcher(False), "0", id="restart-off-is-0"),
    pytest.param(watcher(True), "15", id="restart-on-default-15s"),
    pytest.param(watcher(True, 30), "30", id="restart-on-30s"),
    pytest.param(watcher(False, 30), "0", id="interval-ignored-when-off"),
])
def test_configmap_watcher_interval_follows_values(values: dict[str, Any], interval: str) -> None:
    assert rendered(values)[("ConfigMap", "cilium-config")]["data"]["unmanaged-pod-watcher-interval"] == interval


def test_configmap_has_the_runbooks_settings() -> None:
    data = rendered(runbook(egressMasqueradeInterfaces="ens5"))[("ConfigMap", "cilium-config")]["data"]
    assert {"ipam": "eni", "enable-ipv4": "true", "routing-mode": "native", "egress-masquerade-interfaces": "ens5",
            "enable-hubble": "true", "cluster-name": "dc-migrate-us-west-1-eksctl-io",
            "enable-host-legacy-routing": "true", "hubble-disable-tls": "false",
            "agent-not-ready-taint-key": "node.cilium.io/agent-not-ready",
            "remove-cilium-node-taints": "true"}.items() <= data.items()
    assert "tunnel-protocol" not in data
    tunnel = rendered(runbook(routingMode=None))[("ConfigMap", "cilium-config")]["data"]
    assert (tunnel["routing-mode"], tunnel["tunnel-protocol"]) == ("tunnel", "vxlan"), "the chart's default"


def test_config_checksum_rolls_agents_and_operator_only_when_config_changes() -> None:
    def checksums(values: dict[str, Any]) -> list[str]:
        objs = rendered(values)
        return [objs[k]["spec"]["template"]["metadata"]["annotations"]["cilium.io/cilium-configmap-checksum"]
                for k in (("DaemonSet", "cilium"), ("Deployment", "cilium-operator"))]

    off, on = checksums(watcher(False)), checksums(watcher(True))
    assert checksums(watcher(False)) == off, "certificates differ per render; the checksum does not"
    assert on[0] != off[0] and on[1] != off[1]


@pytest.mark.parametrize(("overrides", "message"), [
    pytest.param({"tunnel": "disabled"}, "tunnel was deprecated in v1.14", id="runbook-tunnel-key"),
    pytest.param({"cluster": {"name": "a-long-cluster-name-us-west-2-eksctl-io"}},
                 "must not be more than 32 characters", id="long-eksctl-name"),
    pytest.param({"hubble": {"enabled": False}}, "Hubble Relay requires", id="relay-without-hubble"),
    pytest.param({"kubeProxyReplacement": "probe"}, "kubeProxyReplacement must be", id="kpr-probe"),
])
def test_values_the_real_chart_refuses(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        cilium.render(CHART, runbook(**overrides))


# ---- the Kubernetes version ------------------------------------------------------------------------

def apparmor(objs: dict[tuple[str, str], dict[str, Any]], name: str) -> tuple[dict[str, str], Any]:
    """(AppArmor annotations, appArmorProfile of the pod securityContext) of DaemonSet ``name``."""
    template = objs[("DaemonSet", name)]["spec"]["template"]
    notes = {k: v for k, v in (template["metadata"].get("annotations") or {}).items() if k.startswith(APPARMOR)}
    return notes, (template["spec"].get("securityContext") or {}).get("appArmorProfile")


AGENT_ANNOTATIONS = {APPARMOR + c: "unconfined"
                     for c in ("cilium-agent", "clean-cilium-state", "mount-cgroup", "apply-sysctl-overwrites")}
ENVOY_ANNOTATIONS = {APPARMOR + "cilium-envoy": "unconfined"}


@pytest.mark.parametrize("kube_version", ["v1.28.15-eks-3b5f4a7", "v1.29.15-eks-0f4dbfd", "v1.29.0"])
def test_below_1_30_apparmor_is_set_by_annotations(kube_version: str) -> None:
    objs = render_for(kube_version)
    assert apparmor(objs, "cilium") == (AGENT_ANNOTATIONS, None)
    assert apparmor(objs, "cilium-envoy") == (ENVOY_ANNOTATIONS, None)
    agent = objs[("DaemonSet", "cilium")]["spec"]["template"]["spec"]
    names = {c["name"] for c in agent["containers"] + agent["initContainers"]}
    assert {k.removeprefix(APPARMOR) for k in AGENT_ANNOTATIONS} <= names, "each annotation names a container"


@pytest.mark.parametrize("kube_version", ["v1.30.0", "v1.30.14-eks-b707fbb", "v1.31.10-eks-388f625"])
def test_from_1_30_apparmor_is_a_security_context_field(kube_version: str) -> None:
    objs = render_for(kube_version)
    assert apparmor(objs, "cilium") == ({}, {"type": "Unconfined"})
    assert apparmor(objs, "cilium-envoy") == ({}, {"type": "Unconfined"})


def test_privileged_pods_get_no_apparmor_annotations() -> None:
    values = runbook(securityContext={"privileged": True}, envoy={"securityContext": {"privileged": True}})
    objs = render_for("v1.29.15-eks-0f4dbfd", values)
    assert apparmor(objs, "cilium")[0] == {} and apparmor(objs, "cilium-envoy")[0] == {}


def test_client_rate_limit_defaults_follow_the_kubernetes_version() -> None:
    old = render_for("v1.26.15-eks-1")[("ConfigMap", "cilium-config")]["data"]
    new = render_for("v1.29.15-eks-0f4dbfd")[("ConfigMap", "cilium-config")]["data"]
    assert (old["k8s-client-qps"], old["k8s-client-burst"]) == ("5", "10")
    assert (new["k8s-client-qps"], new["k8s-client-burst"]) == ("10", "20")


# ---- real Helm against the twin's API server ---------------------------------------------------------

@pytest.fixture
def twin_api() -> Iterator[tuple[Any, Any]]:
    """(store, API server without a token) with namespaces default and kube-system."""
    from twin.apiserver import ApiServer
    from twin.resources import NAMESPACES
    from twin.store import Store

    store = Store()
    for ns in ("default", NS):
        store.create(NAMESPACES, {"metadata": {"name": ns}})
    api = ApiServer(store, token=None)
    api.start()
    try:
        yield store, api
    finally:
        api.stop()


def helm_install(api: Any, values: dict[str, Any]) -> None:
    """``helm install`` of the stand-in against ``api`` as cilium_migration.helm runs it (client-side
    apply, no OpenAPI validation), the release record kept in memory."""
    import helm_python

    with helm_python.Config(kube_apiserver=api.url, storage_driver="memory", namespace=NS) as cfg, \
            helm_python.Chart.load(str(CHART)) as chart:
        helm.install(cfg, chart, "cilium", values, namespace=NS)


@pytest.mark.parametrize(("version", "agent", "envoy"), [
    pytest.param("1.29", (AGENT_ANNOTATIONS, None), (ENVOY_ANNOTATIONS, None), id="1.29-annotations"),
    pytest.param("1.31", ({}, {"type": "Unconfined"}), ({}, {"type": "Unconfined"}), id="1.31-field"),
])
def test_helm_install_renders_for_the_version_the_twin_reports(
        twin_api: tuple[Any, Any], version: str, agent: Any, envoy: Any) -> None:
    from twin.api import discovery
    from twin.resources import DAEMONSETS

    store, api = twin_api
    api.version_info = discovery.version_info(version)
    helm_install(api, runbook())
    stored = {("DaemonSet", name): store.get(DAEMONSETS, NS, name) for name in ("cilium", "cilium-envoy")}
    assert apparmor(stored, "cilium") == agent
    assert apparmor(stored, "cilium-envoy") == envoy


def test_helm_upgrade_keeps_the_ca_and_reissues_hubble_certificates(twin_api: tuple[Any, Any]) -> None:
    """The CA survives an upgrade through ``lookup`` (Secret cilium-ca); genSignedCert runs again, so the
    server and client certificates are new, signed by the same CA (as on a real cluster)."""
    import helm_python

    from twin.resources import SECRETS

    store, api = twin_api
    names = ("cilium-ca", "hubble-server-certs", "hubble-relay-client-certs")
    with helm_python.Config(kube_apiserver=api.url, storage_driver="memory", namespace=NS) as cfg, \
            helm_python.Chart.load(str(CHART)) as chart:
        helm.install(cfg, chart, "cilium", runbook(), namespace=NS)
        installed = {n: store.get(SECRETS, NS, n)["data"] for n in names}
        helm.upgrade(cfg, chart, "cilium", runbook(), namespace=NS)
        upgraded = {n: store.get(SECRETS, NS, n)["data"] for n in names}
    assert upgraded["cilium-ca"] == installed["cilium-ca"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(installed["cilium-ca"]["ca.crt"]))
    for name in names[1:]:
        assert upgraded[name]["ca.crt"] == installed[name]["ca.crt"] == installed["cilium-ca"]["ca.crt"]
        assert upgraded[name]["tls.crt"] != installed[name]["tls.crt"], f"{name} is re-issued"
        assert signed_by(x509.load_pem_x509_certificate(base64.b64decode(upgraded[name]["tls.crt"])), ca)


# ---- the twin reports the scenario's version ----------------------------------------------------------

@pytest.mark.parametrize(("version", "minor", "git"), [
    ("1.29", "29+", "v1.29.15-eks-"), ("1.30", "30+", "v1.30.14-eks-"), ("1.31", "31+", "v1.31.10-eks-"),
    ("v1.32.3", "32+", "v1.32.3-eks-"),
])
def test_version_info_follows_the_kubernetes_version(version: str, minor: str, git: str) -> None:
    from twin.api import discovery

    info = discovery.version_info(version)
    assert (info["major"], info["minor"]) == ("1", minor) and info["gitVersion"].startswith(git)
    assert set(info) == set(discovery.VERSION_INFO) and info["buildDate"]
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        discovery.version_info("latest")


def test_twin_serves_the_scenarios_version() -> None:
    import kubernetes

    from twin.cluster import Twin
    from twin.scenario import load_scenario

    base = load_scenario("default")
    scenario = base.model_copy(update={"cluster": base.cluster.model_copy(update={"version": "1.29"})})
    twin = Twin(scenario)
    try:
        twin.api.start()
        cfg = kubernetes.client.Configuration(host=twin.api.url)
        with kubernetes.client.ApiClient(cfg) as client:
            info = kubernetes.client.VersionApi(client).get_code()
        assert (info.major, info.minor) == ("1", "29+") and info.git_version.startswith("v1.29.15-eks-")
    finally:
        twin.api.stop()
        twin.stop()
    default = Twin(base)
    try:
        assert default.api.version_info["gitVersion"] == "v1.30.14-eks-b707fbb", "default 1.30, as before"
    finally:
        default.stop()


# ---- the chart from a repository ------------------------------------------------------------------------

def without_generated(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects with the Secrets' certificates (new at every offline render) left out."""
    return [{**o, "data": sorted(o.get("data") or {})} if o["kind"] == "Secret" else o for o in objects]


@pytest.fixture
def chart_repo(tmp_path: Path) -> Iterator[str]:
    """The stand-in chart packaged into a Helm repository served on 127.0.0.1 (as helm.cilium.io would)."""
    import functools
    import http.server
    import threading

    import helm_python

    helm_python.package(CHART, destination=tmp_path)
    helm_python.repo_index_generate(tmp_path)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("how", [
    pytest.param("name+repo_url", id="chart-name-and-repo-url"),
    pytest.param("repo-url-only", id="repo-url-means-the-cilium-chart"),
    pytest.param("tgz-url", id="archive-url"),
])
def test_chart_pulled_from_a_repository_renders_the_same(chart_repo: str, how: str) -> None:
    helm._pulled.clear()
    if how == "name+repo_url":
        objects = cilium.render("cilium", runbook(), repo_url=chart_repo, version="1.16.5-twin")
    elif how == "repo-url-only":
        objects = cilium.render(chart_repo, runbook(), version="1.16.5-twin")
    else:
        objects = cilium.render(f"{chart_repo}/cilium-1.16.5-twin.tgz", runbook())
    assert without_generated(objects) == without_generated(cilium.render(CHART, runbook()))


def test_missing_chart_version_is_permanent_unreachable_repo_temporary(chart_repo: str) -> None:
    helm._pulled.clear()
    with pytest.raises(PermanentError, match="cannot pull chart"):
        cilium.render("cilium", runbook(), repo_url=chart_repo, version="9.9.9")
    with pytest.raises(TemporaryError, match="cannot be reached"):
        cilium.render("cilium", runbook(), repo_url="http://127.0.0.1:9", version="1.16.5")
