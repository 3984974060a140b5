"""The Cilium release through Helm itself, as the least-privilege identity of ``deploy/rbac/``.

Covers, against a twin that enforces ``deploy/rbac/clusterrole.yaml`` for the DAG's token (escalation
prevention included) and with the stand-in chart that has the real chart's shape:
- install creates every object of the chart, records revision 1 in a release Secret, and its change
  records name each Secret's keys with fingerprints, never a value;
- a re-run with the same values changes nothing: no new revision, the CA and every Cilium pod kept;
- an upgrade (the unmanaged-pod watcher turned on) keeps the CA (the chart's ``lookup``), records
  revision 2, and says whether pod templates changed;
- ``cni.uninstall=true`` set before the uninstall (Cilium's documented way) restarts the agents with it,
  and the rollback's gate waits for that; the agents then remove ``05-cilium.conflist`` from every node
  when they stop. Without it the file stays on the nodes (and the gate refuses to let the uninstall go);
- uninstall leaves no object with the release's labels or annotations, and no release record;
- an uninstall the identity is not allowed to finish fails, naming what was left.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from cilium_migration import checks, cilium
from cilium_migration.audit import Change
from cilium_migration.clients import Clients
from cilium_migration.errors import PermanentError
from twin.cluster import Twin
from twin.config import FAST
from twin.resources import BY_KEY
from twin.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
CLUSTERROLE = ROOT / "deploy" / "rbac" / "clusterrole.yaml"
CHART = ROOT / "twin" / "charts" / "cilium"
KEY_MARKERS = ("PRIVATE KEY", "UFJJVkFURSBLRVkt", "SVZBVEUgS0VZ", "UklWQVRFIEtFWS0t")  # clear, base64 x3


@pytest.fixture(scope="module")
def twin() -> Iterator[Twin]:
    with Twin(load_scenario("default"), timing=FAST, rbac=CLUSTERROLE) as t:
        yield t


def client_for(twin: Twin, token: str) -> k8s.ApiClient:
    """An official client over HTTPS with ``token``, as the DAG's connection gives it."""
    import tempfile

    import yaml
    from kubernetes import config

    path = Path(tempfile.mkdtemp()) / "kubeconfig"
    path.write_text(yaml.safe_dump(twin.kubeconfig(token=token)))
    return config.new_client_from_config(str(path))


@pytest.fixture(scope="module")
def dag_client(twin: Twin) -> k8s.ApiClient:
    return client_for(twin, twin.rbac_token)


def values(watcher: bool = False) -> dict:
    return cilium.runbook_values(cluster_name="dc-migrate", region="us-west-1",
                                 overrides={"operator": {"unmanagedPodWatcher": {"restart": watcher}}})


def secret_data(twin: Twin, name: str) -> dict:
    obj = twin.store.get(BY_KEY["secrets"], "kube-system", name)
    return dict((obj or {}).get("data") or {})


def cilium_pod_uids(twin: Twin) -> set[str]:
    return {p["metadata"]["uid"] for p in twin.store.iter_all(BY_KEY["pods"])
            if (p["metadata"].get("labels") or {}).get("app.kubernetes.io/part-of") == "cilium"}


def release_leftovers(twin: Twin) -> list[str]:
    """Every stored object that carries the release's Helm labels or annotations."""
    left = []
    for key, objects in twin.store.dump().items():
        for obj in objects:
            meta = obj.get("metadata") or {}
            labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
            if annotations.get("meta.helm.sh/release-name") == "cilium" or \
                    (labels.get("owner") == "helm" and labels.get("name") == "cilium"):
                left.append(f"{key} {meta.get('namespace', '')}/{meta.get('name')}")
    return left


def assert_no_key_material(changes: list[Change], caplog: pytest.LogCaptureFixture) -> None:
    text = json.dumps([c.to_dict() for c in changes]) + caplog.text
    for marker in KEY_MARKERS:
        assert marker not in text


def test_install_creates_the_release_as_the_least_privileged_identity(
        twin: Twin, dag_client: k8s.ApiClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        changes = cilium.deploy(dag_client, CHART, values())
    created = {(c.kind, c.name) for c in changes if c.action == "create"}
    assert {("Secret", "cilium-ca"), ("Role", "cilium-config-agent"), ("RoleBinding", "cilium-config-agent"),
            ("DaemonSet", "cilium"), ("DaemonSet", "cilium-envoy"), ("ClusterRole", "cilium")} <= created
    assert changes[-1].action == "install" and changes[-1].after["revision"] == 1
    ca = next(c for c in changes if (c.kind, c.name) == ("Secret", "cilium-ca"))
    assert set(ca.after["data"]) == {"ca.crt", "ca.key"}
    assert all(str(v).startswith("sha256:") for v in ca.after["data"].values())
    assert_no_key_material(changes, caplog)
    state = cilium.release_state(dag_client)
    assert state is not None and state.installed and state.revision == 1
    denied = [r for r in twin.api.request_log if r.code == 403]
    assert not denied, f"the role must allow the install: {denied[:3]}"


def test_a_rerun_with_the_same_values_changes_nothing(twin: Twin, dag_client: k8s.ApiClient,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    twin.wait_for(lambda: bool(cilium_pod_uids(twin)), 30, "Cilium pods")
    ca, pods = secret_data(twin, "cilium-ca"), cilium_pod_uids(twin)
    with caplog.at_level(logging.INFO):
        changes = cilium.deploy(dag_client, CHART, values())
    assert changes == []
    assert "nothing to upgrade, no Cilium pod restarts" in caplog.text
    assert secret_data(twin, "cilium-ca") == ca and cilium_pod_uids(twin) == pods
    assert cilium.release_state(dag_client).revision == 1  # type: ignore[union-attr]


def test_an_upgrade_keeps_the_ca(twin: Twin, dag_client: k8s.ApiClient,
                                 caplog: pytest.LogCaptureFixture) -> None:
    ca = secret_data(twin, "cilium-ca")
    with caplog.at_level(logging.INFO):
        changes = cilium.deploy(dag_client, CHART, values(watcher=True))
    assert changes[-1].action == "upgrade" and changes[-1].after["revision"] == 2
    assert secret_data(twin, "cilium-ca") == ca, "the chart's lookup keeps the CA"
    assert any(c.kind == "ConfigMap" and c.name == "cilium-config" and c.action == "patch" for c in changes)
    assert "pod templates changed" in caplog.text or "no pod template changed" in caplog.text
    assert_no_key_material(changes, caplog)


def cilium_cni_files(twin: Twin) -> dict[str, list[str]]:
    """Nodes with a file of Cilium's in their CNI configuration directory."""
    return {node: files for node, files in twin.cni_configs().items() if any("cilium" in f for f in files)}


def agents_wrote_their_cni_config(twin: Twin) -> None:
    nodes = {n["metadata"]["name"] for n in twin.store.iter_all(BY_KEY["nodes"])}
    twin.wait_for(lambda: set(cilium_cni_files(twin)) == nodes, 30, "05-cilium.conflist on every node")


def armed(client: k8s.ApiClient) -> checks.Verdict:
    """The rollback's gate before the uninstall; the default scenario's ng-cilium has no node here, so
    every node stays."""
    return checks.run("cilium_cni_uninstall_armed", Clients(api_client=client), namespace="kube-system",
                      nodegroups=["ng-cilium"])


def test_cni_uninstall_is_set_and_the_agents_restart_with_it(twin: Twin, dag_client: k8s.ApiClient) -> None:
    agents_wrote_their_cni_config(twin)  # nothing fences the nodes here: the agents run on ng-1
    changes = cilium.arm_cni_uninstall(dag_client, CHART)
    config = next(c for c in changes if (c.kind, c.name) == ("ConfigMap", "cilium-config"))
    assert config.action == "patch" and config.after["data.cni-uninstall"] == "true", config
    assert changes[-1].action == "upgrade" and changes[-1].after["revision"] == 3
    twin.wait_for(lambda: armed(dag_client).status == checks.DONE, 30, "agents restarted with cni-uninstall")
    assert "run with cni-uninstall" in armed(dag_client).message
    assert cilium.arm_cni_uninstall(dag_client, CHART) == [], "idempotent: already set"


def test_uninstall_leaves_nothing_of_the_release(twin: Twin, dag_client: k8s.ApiClient) -> None:
    changes = cilium.uninstall(dag_client)
    assert {("Secret", "cilium-ca"), ("Role", "cilium-config-agent")} <= \
        {(c.kind, c.name) for c in changes if c.action == "delete"}
    assert release_leftovers(twin) == []
    assert cilium.release_state(dag_client) is None
    assert cilium.uninstall(dag_client) == [], "idempotent: nothing left means no changes"
    twin.wait_for(lambda: not cilium_cni_files(twin), 30, "no Cilium CNI configuration on any node")


def test_without_cni_uninstall_the_config_stays_and_the_gate_says_so() -> None:
    scenario = load_scenario("default")
    scenario.cluster.name = "dc-cni-left"  # beside the module's twin, in the same process
    with Twin(scenario, timing=FAST, rbac=CLUSTERROLE) as t:
        api = client_for(t, t.rbac_token)
        cilium.deploy(api, CHART, values())
        agents_wrote_their_cni_config(t)
        gate = armed(api)
        assert gate.status == checks.FAILED and "05-cilium.conflist" in gate.message, gate.message
        cilium.uninstall(api)
        t.wait_for(lambda: not any(p["metadata"]["name"].startswith("cilium-") for p in t.store.iter_all(
            BY_KEY["pods"])), 30, "Cilium's pods gone")
        nodes = {n["metadata"]["name"] for n in t.store.iter_all(BY_KEY["nodes"])}
        assert set(cilium_cni_files(t)) == nodes, "the agents stopped without removing their CNI config"


def test_an_uninstall_that_is_refused_fails_naming_what_is_left(tmp_path: Path) -> None:
    import yaml

    role = [d for d in yaml.safe_load_all(CLUSTERROLE.read_text()) if d]
    for doc in role:  # the same identity, but it may not delete Roles in kube-system
        for rule in doc.get("rules") or []:
            if "roles" in rule.get("resources", []) and "delete" in rule.get("verbs", []):
                rule["verbs"] = [v for v in rule["verbs"] if v != "delete"]
    limited = tmp_path / "limited.yaml"
    limited.write_text(yaml.safe_dump_all(role))
    scenario = load_scenario("default")
    scenario.cluster.name = "dc-limited"  # beside the module's twin, in the same process
    with Twin(scenario, timing=FAST, rbac=limited) as t:
        api = client_for(t, t.rbac_token)
        admin = client_for(t, t.token)
        cilium.deploy(admin, CHART, values())
        with pytest.raises(PermanentError, match=r"left .*Role kube-system/cilium-config-agent"):
            cilium.uninstall(api)
