"""Lists are read in pages (``limit`` and ``continue``), the way kubectl reads them, so that no answer
grows with the cluster: every item comes back, in as many requests as pages; a continue token the server
no longer honours (410 Expired) starts the list over once."""

from __future__ import annotations

import pytest

from cilium_migration import clients as clients_module
from cilium_migration.clients import Clients, items
from twin.cluster import Twin
from twin.resources import BY_KEY


def pod_lists(twin: Twin, since: int) -> int:
    return sum(1 for r in twin.api.request_log[since:] if r.verb == "list" and r.resource == "pods")


def test_every_item_comes_back_in_pages(twin: Twin, clients: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    twin.wait_for(lambda: len(list(twin.store.iter_all(BY_KEY["pods"]))) >= 7, 30, "the scenario's pods")
    stored = sorted(p["metadata"]["uid"] for p in twin.store.iter_all(BY_KEY["pods"]))
    monkeypatch.setattr(clients_module, "PAGE_SIZE", 3)
    since = len(twin.api.request_log)
    listed = items(clients.core.list_pod_for_all_namespaces)
    assert sorted(p["metadata"]["uid"] for p in listed) == stored
    assert pod_lists(twin, since) == -(-len(stored) // 3), "one request per page"


def test_an_expired_continue_token_starts_the_list_over(twin: Twin, clients: Clients,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clients_module, "PAGE_SIZE", 3)
    stored = sorted(p["metadata"]["uid"] for p in twin.store.iter_all(BY_KEY["pods"]))
    expired: list[bool] = []

    def listing(**kwargs: object) -> object:
        if kwargs.get("_continue") and not expired:  # the second page: the server compacted meanwhile
            expired.append(True)
            twin.faults.update({"api": [{"path": "^/api/v1/pods$", "status": 410, "count": 1}]})
        return clients.core.list_pod_for_all_namespaces(**kwargs)

    listed = items(listing)
    assert expired and sorted(p["metadata"]["uid"] for p in listed) == stored, "no item lost or doubled"
