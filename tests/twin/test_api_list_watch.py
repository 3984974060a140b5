"""Lists and watches through the official client.

Covers: set-based label selectors (=, !=, in, notin, exists, !key) and field selectors, each returning
exactly the matching objects (a selector that matched everything would fail these); limit/continue
paging; watches via ``kubernetes.watch.Watch().stream`` from a resourceVersion, with timeoutSeconds,
selectors and DELETED events; 410 Expired for a resourceVersion older than the history; several
concurrent watches; a ``spec.nodeName`` list on a 1,000-node, 20,000-pod store well under a second.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from twin import store as store_module
from twin.apiserver import ApiServer
from twin.resources import NAMESPACES, NODES, PODS
from twin.store import Store

PODS_BY_LABELS = {
    "a": {"app": "web", "tier": "front"},
    "b": {"app": "web", "tier": "back"},
    "c": {"app": "db", "tier": "back"},
    "d": {"app": "cache"},
    "e": {},
}


@pytest.fixture
def labelled_pods(store: Store) -> None:
    for name, labels in PODS_BY_LABELS.items():
        node = "n1" if name in ("a", "c") else "n2"
        store.create(PODS, {"metadata": {"name": name, "namespace": "default", "labels": labels},
                            "spec": {"nodeName": node, "containers": []},
                            "status": {"phase": "Running" if name != "e" else "Pending"}})


@pytest.mark.usefixtures("labelled_pods")
@pytest.mark.parametrize(("selector", "expected"), [
    pytest.param("app=web", ["a", "b"], id="equals"),
    pytest.param("app==web", ["a", "b"], id="double-equals"),
    pytest.param("app!=web", ["c", "d", "e"], id="not-equals-includes-missing-key"),
    pytest.param("app in (web,db)", ["a", "b", "c"], id="in"),
    pytest.param("app notin (web,db)", ["d", "e"], id="notin"),
    pytest.param("tier", ["a", "b", "c"], id="exists"),
    pytest.param("!tier", ["d", "e"], id="does-not-exist"),
    pytest.param("app=web,tier=back", ["b"], id="and"),
    pytest.param("app in (web, cache),!tier", ["d"], id="set-and-not-exists"),
    pytest.param("app=nothing", [], id="matches-none"),
])
def test_label_selectors(core: kubernetes.client.CoreV1Api, selector: str, expected: list[str]) -> None:
    pods = core.list_namespaced_pod("default", label_selector=selector)
    assert [p.metadata.name for p in pods.items] == expected


@pytest.mark.usefixtures("labelled_pods")
@pytest.mark.parametrize(("selector", "expected"), [
    pytest.param("spec.nodeName=n1", ["a", "c"], id="node-name"),
    pytest.param("spec.nodeName!=n1", ["b", "d", "e"], id="node-name-not"),
    pytest.param("metadata.name=b", ["b"], id="name"),
    pytest.param("status.phase=Running,spec.nodeName=n2", ["b", "d"], id="and"),
    pytest.param("metadata.namespace=default,status.phase!=Running", ["e"], id="namespace-and-phase"),
    pytest.param("spec.nodeName=nowhere", [], id="unknown-node"),
])
def test_field_selectors(core: kubernetes.client.CoreV1Api, selector: str, expected: list[str]) -> None:
    pods = core.list_pod_for_all_namespaces(field_selector=selector)
    assert [p.metadata.name for p in pods.items] == expected


@pytest.mark.usefixtures("labelled_pods")
def test_label_and_field_selectors_combine(core: kubernetes.client.CoreV1Api) -> None:
    pods = core.list_namespaced_pod("default", label_selector="tier=back", field_selector="spec.nodeName=n1")
    assert [p.metadata.name for p in pods.items] == ["c"]


def test_node_field_selector_on_unschedulable(core: kubernetes.client.CoreV1Api, store: Store) -> None:
    store.create(NODES, {"metadata": {"name": "n1"}, "spec": {"unschedulable": True}})
    store.create(NODES, {"metadata": {"name": "n2"}, "spec": {}})
    assert [n.metadata.name for n in core.list_node(field_selector="spec.unschedulable=true").items] == ["n1"]
    assert [n.metadata.name for n in core.list_node(field_selector="spec.unschedulable!=true").items] == ["n2"]


@pytest.mark.usefixtures("labelled_pods")
def test_limit_and_continue_page_through_everything_once(core: kubernetes.client.CoreV1Api) -> None:
    seen, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_pod("default", limit=2, _continue=token)
        seen += [p.metadata.name for p in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 5 - len(seen)
    assert seen == ["a", "b", "c", "d", "e"] and pages == 3


def test_list_kind_and_resource_version(core: kubernetes.client.CoreV1Api, kube_client: Any,
                                        store: Store) -> None:
    resp = kube_client.call_api("/api/v1/namespaces", "GET", auth_settings=["BearerToken"],
                                _preload_content=False, _return_http_data_only=True)
    body = json.loads(resp.data)
    assert (body["kind"], body["apiVersion"]) == ("NamespaceList", "v1")
    assert body["metadata"]["resourceVersion"] == str(store.resource_version)


# ---- watches -----------------------------------------------------------------------------------

def _pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"containers": []}}


def test_watch_from_a_resource_version_sees_later_changes_only(core: kubernetes.client.CoreV1Api,
                                                                store: Store) -> None:
    core.create_namespaced_pod("default", _pod("before"))
    rv = core.list_namespaced_pod("default").metadata.resource_version

    def changes() -> None:
        time.sleep(0.2)
        core.create_namespaced_pod("default", _pod("web", {"app": "web"}))
        core.create_namespaced_pod("default", _pod("other"))
        core.patch_namespaced_pod("web", "default", {"metadata": {"labels": {"x": "1"}}})
        core.delete_namespaced_pod("web", "default")

    writer = threading.Thread(target=changes)
    writer.start()
    events = []
    w = kubernetes.watch.Watch()
    for ev in w.stream(core.list_namespaced_pod, "default", resource_version=rv, label_selector="app=web",
                       timeout_seconds=2):
        events.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            w.stop()
    writer.join()
    assert events == [("ADDED", "web"), ("MODIFIED", "web"), ("DELETED", "web")]


def test_watch_without_resource_version_starts_with_the_current_objects(core: kubernetes.client.CoreV1Api,
                                                                         store: Store) -> None:
    store.create(NODES, {"metadata": {"name": "n1"}})
    store.create(NODES, {"metadata": {"name": "n2"}})
    start = time.monotonic()
    events = [(e["type"], e["object"].metadata.name)
              for e in kubernetes.watch.Watch().stream(core.list_node, timeout_seconds=1)]
    assert events == [("ADDED", "n1"), ("ADDED", "n2")]
    assert 0.9 <= time.monotonic() - start < 3  # ended by timeoutSeconds


def test_watch_with_a_field_selector_on_one_node(core: kubernetes.client.CoreV1Api, store: Store) -> None:
    for name, node in [("a", "n1"), ("b", "n2")]:
        store.create(PODS, {"metadata": {"name": name, "namespace": "default"},
                            "spec": {"nodeName": node, "containers": []}})
    events = [e["object"].metadata.name for e in kubernetes.watch.Watch().stream(
        core.list_pod_for_all_namespaces, field_selector="spec.nodeName=n2", timeout_seconds=1)]
    assert events == ["b"]


def test_watch_from_an_expired_resource_version_is_410(core: kubernetes.client.CoreV1Api, store: Store,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "HISTORY", 3)
    small = Store()
    small.create(NAMESPACES, {"metadata": {"name": "default"}})
    for i in range(6):
        small.create(NODES, {"metadata": {"name": f"n{i}"}})
    server = ApiServer(small)
    server.start()
    try:
        config = kubernetes.client.Configuration()
        config.host = server.url
        with kubernetes.client.ApiClient(config) as client:
            api = kubernetes.client.CoreV1Api(client)
            with pytest.raises(ApiException) as err:
                for _ in kubernetes.watch.Watch().stream(api.list_node, resource_version="1", timeout_seconds=1):
                    pass
            assert err.value.status == 410
    finally:
        server.stop()


def test_concurrent_watches_do_not_block_other_requests(core: kubernetes.client.CoreV1Api,
                                                        api_server: ApiServer, store: Store) -> None:
    results: dict[int, list[str]] = {}

    def watch(i: int) -> None:
        config = kubernetes.client.Configuration()
        config.host = api_server.url
        config.api_key = {"authorization": f"Bearer {api_server.token}"}
        with kubernetes.client.ApiClient(config) as client:
            api = kubernetes.client.CoreV1Api(client)
            results[i] = [e["object"].metadata.name for e in kubernetes.watch.Watch().stream(
                api.list_namespaced_config_map, "default", timeout_seconds=1)]

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    start = time.monotonic()
    core.create_namespaced_config_map("default", {"metadata": {"name": "cfg"}})
    assert len(core.list_namespaced_config_map("default").items) == 1
    assert time.monotonic() - start < 0.5
    for t in threads:
        t.join()
    assert results == {i: ["cfg"] for i in range(6)}


# ---- speed ---------------------------------------------------------------------------------------

def test_listing_one_nodes_pods_in_a_large_cluster_is_fast(core: kubernetes.client.CoreV1Api,
                                                           store: Store) -> None:
    for n in range(1000):
        store.create(NODES, {"metadata": {"name": f"node-{n}"}})
    for p in range(20_000):
        store.create(PODS, {"metadata": {"name": f"pod-{p}", "namespace": "default", "labels": {"app": "x"}},
                            "spec": {"nodeName": f"node-{p % 1000}", "containers": [{"name": "c", "image": "i"}]},
                            "status": {"phase": "Running"}})
    core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-0")  # warm the connection
    start = time.monotonic()
    pods = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-7")
    elapsed = time.monotonic() - start
    assert sorted(int(p.metadata.name.split("-")[1]) for p in pods.items) == list(range(7, 20_000, 1000))
    assert elapsed < 0.25, f"list took {elapsed:.3f}s"


def test_an_abandoned_watch_is_released_within_a_second(api_server: ApiServer, store: Store) -> None:
    conn = socket.create_connection(("127.0.0.1", api_server.port))
    conn.sendall(b"GET /api/v1/namespaces?watch=true HTTP/1.1\r\nHost: twin\r\n"
                 b"Authorization: Bearer " + api_server.token.encode() + b"\r\n\r\n")  # type: ignore[union-attr]
    assert conn.recv(4096).startswith(b"HTTP/1.1 200 OK")
    assert len(store._watches) == 1
    conn.close()
    deadline = time.monotonic() + 3
    while store._watches and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store._watches == []
