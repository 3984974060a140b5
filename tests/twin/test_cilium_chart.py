"""The stand-in Cilium chart (twin/charts/cilium), rendered by the Helm engine and applied to the twin.

Rendering (no cluster): the runbook's values give the objects the real chart names, in the order Helm's
own install (client dry run) puts them; the agents' node affinity, the ConfigMap's
``unmanaged-pod-watcher-interval``, the config checksum and Hubble Relay follow the values.

Against the twin's API server, over HTTP with the official client: apply creates every object with
Helm's ownership metadata; a second apply sends no write (resourceVersions unchanged); a values change
patches ``cilium-config`` and the pod templates' checksum and nothing else; ``dry_run`` leaves the store
as it was; a foreign object is not taken over; deploy records Helm release Secrets that the Helm engine
itself lists, and prunes objects an upgrade drops; uninstall removes the release's objects and Secrets
(not another release's) and is idempotent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cilium_migration import cilium
from cilium_migration.errors import PermanentError, TemporaryError

CHART = Path(__file__).resolve().parents[2] / "twin" / "charts" / "cilium"
NS = "kube-system"


def runbook(**overrides: Any) -> dict[str, Any]:
    return cilium.runbook_values(cluster_name="dc-migrate", region="us-west-1", overrides=overrides)


def watcher(restart: bool, interval: int | None = None) -> dict[str, Any]:
    upw: dict[str, Any] = {"restart": restart}
    if interval is not None:
        upw["intervalSeconds"] = interval
    return runbook(operator={"unmanagedPodWatcher": upw})


def by_kind_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


# ---- rendering -------------------------------------------------------------------------------------

RUNBOOK_OBJECTS = [
    ("ServiceAccount", "cilium"), ("ServiceAccount", "cilium-operator"), ("ServiceAccount", "hubble-relay"),
    ("ConfigMap", "cilium-config"), ("ConfigMap", "hubble-relay-config"),
    ("ClusterRole", "cilium"), ("ClusterRole", "cilium-operator"),
    ("ClusterRoleBinding", "cilium"), ("ClusterRoleBinding", "cilium-operator"),
    ("Service", "hubble-peer"), ("Service", "hubble-relay"),
    ("DaemonSet", "cilium"), ("Deployment", "cilium-operator"), ("Deployment", "hubble-relay"),
]


def test_render_gives_the_charts_objects_in_install_order() -> None:
    objects = cilium.render(CHART, runbook())
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == RUNBOOK_OBJECTS
    namespaced = [o for o in objects if not o["kind"].startswith("Cluster")]
    assert {o["metadata"]["namespace"] for o in namespaced} == {NS}


def test_render_order_is_the_helm_engines_install_order() -> None:
    import helm_python

    with helm_python.Config(kube_apiserver="http://127.0.0.1:9", storage_driver="memory", namespace=NS) as cfg:
        release = cfg.install(str(CHART), "cilium", runbook(), dry_run="client", namespace=NS)
    engine = [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(release["manifest"]) if d]
    assert [(o["kind"], o["metadata"]["name"]) for o in cilium.render(CHART, runbook())] == engine


def test_agent_daemonset_carries_the_runbook_affinity_and_cilium_labels() -> None:
    ds = by_kind_name(cilium.render(CHART, runbook()))[("DaemonSet", "cilium")]
    labels = {"k8s-app": "cilium", "app.kubernetes.io/name": "cilium-agent", "app.kubernetes.io/part-of": "cilium"}
    assert labels.items() <= ds["metadata"]["labels"].items()
    pod = ds["spec"]["template"]
    assert labels.items() <= pod["metadata"]["labels"].items()
    assert ds["spec"]["selector"]["matchLabels"] == {"k8s-app": "cilium"}
    assert pod["spec"]["affinity"]["nodeAffinity"] == runbook()["affinity"]["nodeAffinity"]
    assert pod["spec"]["hostNetwork"] is True
    assert pod["spec"]["tolerations"] == [{"operator": "Exists"}]
    assert pod["spec"]["serviceAccountName"] == "cilium"


def test_operator_deployment() -> None:
    dep = by_kind_name(cilium.render(CHART, runbook()))[("Deployment", "cilium-operator")]
    assert {"io.cilium/app": "operator", "name": "cilium-operator"}.items() <= dep["metadata"]["labels"].items()
    assert dep["spec"]["replicas"] == 1
    spec = dep["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True and spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["containers"][0]["image"] == "quay.io/cilium/operator-aws:v1.16.5", "ENI IPAM runs operator-aws"


@pytest.mark.parametrize(("values", "interval"), [
    pytest.param(watcher(False), "0", id="restart-off-is-0"),
    pytest.param(watcher(True), "15", id="restart-on-default-15s"),
    pytest.param(watcher(True, 30), "30", id="restart-on-30s"),
    pytest.param(watcher(False, 30), "0", id="interval-ignored-when-off"),
])
def test_configmap_watcher_interval_follows_values(values: dict[str, Any], interval: str) -> None:
    cm = by_kind_name(cilium.render(CHART, values))[("ConfigMap", "cilium-config")]
    assert cm["data"]["unmanaged-pod-watcher-interval"] == interval


def test_configmap_has_the_runbooks_settings() -> None:
    data = by_kind_name(cilium.render(CHART, runbook(egressMasqueradeInterfaces="ens5")))[
        ("ConfigMap", "cilium-config")]["data"]
    assert {"ipam": "eni", "enable-ipv4": "true", "routing-mode": "native", "egress-masquerade-interfaces": "ens5",
            "enable-hubble": "true", "cluster-name": "dc-migrate-us-west-1-eksctl-io",
            "enable-host-legacy-routing": "true"}.items() <= data.items()
    assert "tunnel-protocol" not in data


def test_config_checksum_rolls_agents_and_operator_only_when_config_changes() -> None:
    def checksums(values: dict[str, Any]) -> list[str]:
        objs = by_kind_name(cilium.render(CHART, values))
        return [objs[k]["spec"]["template"]["metadata"]["annotations"]["cilium.io/cilium-configmap-checksum"]
                for k in (("DaemonSet", "cilium"), ("Deployment", "cilium-operator"))]

    off, on = checksums(watcher(False)), checksums(watcher(True))
    assert checksums(watcher(False)) == off
    assert on[0] != off[0] and on[1] != off[1]


def test_relay_off_renders_no_relay() -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in cilium.render(CHART, runbook(hubble={"relay": {"enabled": False}}))}
    assert not {n for n in names if "relay" in n[1]}
    assert ("Service", "hubble-peer") in names


# ---- against the twin ----------------------------------------------------------------------------

@pytest.fixture
def twin() -> Iterator[tuple[Any, Any]]:
    """(store, api server) with namespaces default and kube-system, over HTTP on a free port."""
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


@pytest.fixture
def client(twin: tuple[Any, Any]) -> Iterator[Any]:
    from kubernetes.client import ApiClient, Configuration

    cfg = Configuration(host=twin[1].url)
    with ApiClient(cfg) as api_client:
        yield api_client


def stored(store: Any, obj: dict[str, Any]) -> dict[str, Any] | None:
    from twin.resources import for_kind

    rt = for_kind(obj["apiVersion"], obj["kind"])
    return store.get(rt, obj["metadata"].get("namespace") if rt.namespaced else None, obj["metadata"]["name"])


def versions(store: Any) -> dict[str, list[tuple[str, str]]]:
    return {k: [(o["metadata"].get("name"), o["metadata"]["resourceVersion"]) for o in v]
            for k, v in store.dump().items()}


def writes(api: Any) -> list[Any]:
    return [r for r in api.request_log if r.verb in ("create", "update", "patch", "delete", "deletecollection")]


def test_apply_creates_every_object_with_helm_ownership(twin: tuple[Any, Any], client: Any) -> None:
    store, _ = twin
    objects = cilium.render(CHART, runbook())
    changes = cilium.apply(client, objects, release="cilium", namespace=NS)
    assert [(c.action, c.kind, c.name) for c in changes] == [("create", k, n) for k, n in RUNBOOK_OBJECTS]
    for obj in objects:
        live = stored(store, obj)
        assert live is not None, obj["metadata"]["name"]
        assert live["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert live["metadata"]["annotations"]["meta.helm.sh/release-name"] == "cilium"
        assert live["metadata"]["annotations"]["meta.helm.sh/release-namespace"] == NS
    ds = stored(store, objects[[o["kind"] for o in objects].index("DaemonSet")])
    assert ds is not None and ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"] == runbook()["affinity"]["nodeAffinity"]


def test_second_apply_writes_nothing(twin: tuple[Any, Any], client: Any) -> None:
    store, api = twin
    objects = cilium.render(CHART, runbook())
    cilium.apply(client, objects, release="cilium", namespace=NS)
    before, sent = versions(store), len(writes(api))
    assert sent == len(objects), "the request log sees the first apply's creates"
    changes = cilium.apply(client, cilium.render(CHART, runbook()), release="cilium", namespace=NS)
    assert {c.action for c in changes} == {"unchanged"}
    assert versions(store) == before
    assert len(writes(api)) == sent


def test_values_change_patches_config_and_checksums_only(twin: tuple[Any, Any], client: Any) -> None:
    store, _ = twin
    cilium.apply(client, cilium.render(CHART, watcher(False)), release="cilium", namespace=NS)
    changes = cilium.apply(client, cilium.render(CHART, watcher(True)), release="cilium", namespace=NS,
                           previous=cilium.render(CHART, watcher(False)))
    patched = {(c.kind, c.name) for c in changes if c.action == "patch"}
    assert patched == {("ConfigMap", "cilium-config"), ("DaemonSet", "cilium"), ("Deployment", "cilium-operator")}
    cm = next(c for c in changes if c.name == "cilium-config")
    assert cm.before == {"data.unmanaged-pod-watcher-interval": "0"}
    assert cm.after == {"data.unmanaged-pod-watcher-interval": "15"}
    from twin.resources import CONFIGMAPS, DAEMONSETS
    assert store.get(CONFIGMAPS, NS, "cilium-config")["data"]["unmanaged-pod-watcher-interval"] == "15"
    ds = store.get(DAEMONSETS, NS, "cilium")
    assert ds["metadata"]["generation"] == 2, "the pod template changed: the agents roll"


def test_dropped_keys_are_removed_on_upgrade(twin: tuple[Any, Any], client: Any) -> None:
    store, _ = twin
    old = cilium.render(CHART, runbook())
    cilium.apply(client, old, release="cilium", namespace=NS)
    new = cilium.render(CHART, runbook(egressMasqueradeInterfaces=""))
    changes = cilium.apply(client, new, release="cilium", namespace=NS, previous=old)
    cm = next(c for c in changes if c.name == "cilium-config")
    assert cm.action == "patch" and cm.after == {"data.egress-masquerade-interfaces": None}
    from twin.resources import CONFIGMAPS
    assert "egress-masquerade-interfaces" not in store.get(CONFIGMAPS, NS, "cilium-config")["data"]


def test_dry_run_leaves_the_store_unchanged(twin: tuple[Any, Any], client: Any) -> None:
    store, _ = twin
    empty = versions(store)
    changes = cilium.apply(client, cilium.render(CHART, watcher(False)), release="cilium", namespace=NS,
                           dry_run=True)
    assert {c.action for c in changes} == {"create"} and all(c.dry_run for c in changes)
    assert versions(store) == empty
    cilium.deploy(client, CHART, watcher(False), release="cilium", namespace=NS)
    installed = versions(store)
    changes = cilium.deploy(client, CHART, watcher(True), release="cilium", namespace=NS, dry_run=True)
    assert {c.action for c in changes} >= {"patch", "upgrade"}
    assert cilium.uninstall(client, release="cilium", namespace=NS, dry_run=True)
    assert versions(store) == installed


def test_foreign_object_is_not_taken_over(twin: tuple[Any, Any], client: Any) -> None:
    store, _ = twin
    from twin.resources import CONFIGMAPS
    store.create(CONFIGMAPS, {"metadata": {"name": "cilium-config", "namespace": NS}, "data": {"ipam": "x"}})
    objects = cilium.render(CHART, runbook())
    with pytest.raises(PermanentError, match="not owned by Helm release kube-system/cilium"):
        cilium.apply(client, objects, release="cilium", namespace=NS)
    cilium.apply(client, objects, release="cilium", namespace=NS, adopt=True)
    assert store.get(CONFIGMAPS, NS, "cilium-config")["data"]["ipam"] == "eni"


def release_secrets(store: Any) -> dict[str, dict[str, str]]:
    from twin.resources import SECRETS
    items, _ = store.list(SECRETS, NS)
    return {s["metadata"]["name"]: s["metadata"]["labels"] for s in items if s.get("type") == "helm.sh/release.v1"}


def test_deploy_records_helm_releases(twin: tuple[Any, Any], client: Any) -> None:
    store, api = twin
    first = cilium.deploy(client, CHART, watcher(False), release="cilium", namespace=NS)
    assert first[-1].action == "install" and first[-1].after == {"revision": 1, "chart": "cilium-1.16.5-twin"}
    labels = release_secrets(store)["sh.helm.release.v1.cilium.v1"]
    assert {"name": "cilium", "owner": "helm", "status": "deployed", "version": "1"}.items() <= labels.items()

    again = cilium.deploy(client, CHART, watcher(False), release="cilium", namespace=NS)
    assert {c.action for c in again} == {"unchanged"}, "a retried deploy records no revision"
    assert list(release_secrets(store)) == ["sh.helm.release.v1.cilium.v1"]

    cilium.deploy(client, CHART, watcher(True), release="cilium", namespace=NS)
    secrets = release_secrets(store)
    assert secrets["sh.helm.release.v1.cilium.v1"]["status"] == "superseded"
    assert secrets["sh.helm.release.v1.cilium.v2"]["status"] == "deployed"
    state = cilium.release_state(client, release="cilium", namespace=NS)
    assert state is not None and state.installed and state.revision == 2
    assert state.values["operator"]["unmanagedPodWatcher"]["restart"] is True
    assert (state.chart_name, state.chart_version) == ("cilium", "1.16.5-twin")
    assert {(o["kind"], o["metadata"]["name"]) for o in state.objects} == set(RUNBOOK_OBJECTS)

    from twin.resources import SECRETS
    raw = store.get(SECRETS, NS, "sh.helm.release.v1.cilium.v2")
    body = cilium.decode_release(base64.b64decode(raw["data"]["release"]).decode())
    assert body["info"]["status"] == "deployed" and body["version"] == 2 and body["namespace"] == NS
    assert json.loads(json.dumps(body["chart"]["metadata"]))["name"] == "cilium"


def test_helm_engine_lists_the_recorded_release(twin: tuple[Any, Any], client: Any) -> None:
    import helm_python

    _, api = twin
    cilium.deploy(client, CHART, watcher(False), release="cilium", namespace=NS)
    cilium.deploy(client, CHART, watcher(True), release="cilium", namespace=NS)
    with helm_python.Config(kube_apiserver=api.url, namespace=NS) as cfg:
        releases = cfg.list()
        values = cfg.get_values("cilium")
    assert [(r["name"], r["revision"], r["status"], r["chart_version"]) for r in releases] == [
        ("cilium", 2, "deployed", "1.16.5-twin")]
    assert values["operator"]["unmanagedPodWatcher"]["restart"] is True


def test_upgrade_deletes_what_the_new_revision_drops(twin: tuple[Any, Any], client: Any) -> None:
    store, _ = twin
    cilium.deploy(client, CHART, runbook(), release="cilium", namespace=NS)
    changes = cilium.deploy(client, CHART, runbook(hubble={"relay": {"enabled": False}}), release="cilium",
                            namespace=NS)
    deleted = {(c.kind, c.name) for c in changes if c.action == "delete"}
    assert deleted == {("Deployment", "hubble-relay"), ("Service", "hubble-relay"),
                       ("ConfigMap", "hubble-relay-config"), ("ServiceAccount", "hubble-relay")}
    from twin.resources import DEPLOYMENTS
    assert store.get(DEPLOYMENTS, NS, "hubble-relay") is None
    assert store.get(DEPLOYMENTS, NS, "cilium-operator") is not None


def test_uninstall_removes_the_release_and_is_idempotent(twin: tuple[Any, Any], client: Any) -> None:
    store, _ = twin
    from twin.resources import CONFIGMAPS
    other = cilium.with_ownership({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "other-config", "namespace": NS}, "data": {}},
                                  release="other", namespace=NS)
    store.create(CONFIGMAPS, other)
    cilium.deploy(client, CHART, runbook(), release="cilium", namespace=NS)
    objects = cilium.render(CHART, runbook())

    changes = cilium.uninstall(client, release="cilium", namespace=NS)
    assert {(c.kind, c.name) for c in changes} == set(RUNBOOK_OBJECTS) | {("Secret", "sh.helm.release.v1.cilium.v1")}
    assert [c.kind for c in changes].index("DaemonSet") < [c.kind for c in changes].index("ConfigMap"), \
        "Helm's uninstall order: workloads before their config"
    assert all(stored(store, o) is None for o in objects)
    assert release_secrets(store) == {}
    assert store.get(CONFIGMAPS, NS, "other-config") is not None, "another release's objects stay"
    assert cilium.release_state(client, release="cilium", namespace=NS) is None

    assert cilium.uninstall(client, release="cilium", namespace=NS) == []


def test_works_with_a_bearer_token_client() -> None:
    """The DAG's client carries a token (KubernetesHook); every call must send it."""
    from kubernetes.client import ApiClient, Configuration

    from twin.apiserver import ApiServer
    from twin.resources import DAEMONSETS, NAMESPACES
    from twin.store import Store

    store = Store()
    store.create(NAMESPACES, {"metadata": {"name": NS}})
    api = ApiServer(store, token="s3cret")
    api.start()
    try:
        cfg = Configuration(host=api.url, api_key={"BearerToken": "Bearer s3cret"})  # as load_kube_config sets it
        with ApiClient(cfg) as api_client:
            cilium.deploy(api_client, CHART, runbook(), release="cilium", namespace=NS)
            assert store.get(DAEMONSETS, NS, "cilium") is not None
            assert cilium.uninstall(api_client, release="cilium", namespace=NS)
        with ApiClient(Configuration(host=api.url)) as anonymous, pytest.raises(PermanentError, match="401"):
            cilium.release_state(anonymous, release="cilium", namespace=NS)
    finally:
        api.stop()


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
    cilium._pulled.clear()
    if how == "name+repo_url":
        objects = cilium.render("cilium", runbook(), repo_url=chart_repo, version="1.16.5-twin")
    elif how == "repo-url-only":
        objects = cilium.render(chart_repo, runbook(), version="1.16.5-twin")
    else:
        objects = cilium.render(f"{chart_repo}/cilium-1.16.5-twin.tgz", runbook())
    assert objects == cilium.render(CHART, runbook())


def test_missing_chart_version_is_permanent_unreachable_repo_temporary(chart_repo: str) -> None:
    cilium._pulled.clear()
    with pytest.raises(PermanentError, match="cannot load chart"):
        cilium.render("cilium", runbook(), repo_url=chart_repo, version="9.9.9")
    with pytest.raises(TemporaryError, match="cannot be reached"):
        cilium.render("cilium", runbook(), repo_url="http://127.0.0.1:9", version="1.16.5")
