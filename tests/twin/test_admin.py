"""The admin API under /_twin/ on the Kubernetes API port, reached over HTTP with the bearer token.

Covers: faults read and partially patched (unknown keys 400, taking effect on the shared Faults at once);
the disruption record; the request log (with ``since``); the state dump; 401 without the token; 404/405.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from twin.admin import AdminApi
from twin.apiserver import ApiServer
from twin.faults import Faults
from twin.resources import NAMESPACES
from twin.store import Store

TOKEN = "admin-test-token"
VIOLATION = {"pdb": "default/web", "pod": "default/web-1", "event": "deleted"}


class Admin:
    def __init__(self) -> None:
        self.store, self.faults = Store(), Faults()
        self.store.create(NAMESPACES, {"metadata": {"name": "default"}})
        self.api = ApiServer(self.store, token=TOKEN, faults=self.faults)
        self.api.add_route(
            "/_twin/",
            AdminApi(
                store=self.store,
                faults=self.faults,
                request_log=lambda: self.api.request_log,
                disruptions=lambda: [VIOLATION],
            ),
        )
        self.api.start()

    def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api.url + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")


@pytest.fixture
def admin() -> Iterator[Admin]:
    a = Admin()
    yield a
    a.api.stop()


class TestFaults:
    def test_get_shows_every_fault(self, admin: Admin) -> None:
        status, body = admin.call("GET", "/_twin/faults")
        assert status == 200
        assert body == Faults().to_dict()

    def test_patch_is_partial_and_takes_effect_at_once(self, admin: Admin) -> None:
        status, body = admin.call(
            "PATCH",
            "/_twin/faults",
            {"cross_cni_broken": True, "api": [{"path": "/api/v1/nodes", "status": 503, "count": 1}]},
        )
        assert status == 200 and body["cross_cni_broken"] is True and body["agent_never_ready"] == []
        assert admin.faults.cross_cni_broken is True
        assert admin.faults.api_error_for("GET", "/api/v1/nodes") == 503

    @pytest.mark.parametrize(
        "body",
        [pytest.param({"no_such_fault": 1}, id="unknown-key"), pytest.param([1, 2], id="not-an-object")],
    )
    def test_patch_rejects_bad_bodies(self, admin: Admin, body: Any) -> None:
        status, reply = admin.call("PATCH", "/_twin/faults", body)
        assert status == 400 and reply["error"]
        assert admin.faults.to_dict() == Faults().to_dict()


def test_disruptions(admin: Admin) -> None:
    assert admin.call("GET", "/_twin/disruptions") == (200, {"items": [VIOLATION]})


def test_requests_log_what_was_served(admin: Admin) -> None:
    admin.call("GET", "/api/v1/namespaces")
    status, body = admin.call("GET", "/_twin/requests")
    assert status == 200
    listed = [r for r in body["items"] if r["resource"] == "namespaces"]
    assert listed and listed[0]["verb"] == "list" and listed[0]["code"] == 200
    total = len(body["items"])
    assert len(admin.call("GET", f"/_twin/requests?since={total}")[1]["items"]) == 1  # the previous call


def test_state_dumps_the_store(admin: Admin) -> None:
    status, body = admin.call("GET", "/_twin/state")
    assert status == 200
    assert [ns["metadata"]["name"] for ns in body["objects"]["namespaces"]] == ["default"]


@pytest.mark.parametrize(
    ("method", "path", "token", "code"),
    [
        pytest.param("GET", "/_twin/faults", None, 401, id="no-token"),
        pytest.param("GET", "/_twin/faults", "wrong", 401, id="wrong-token"),
        pytest.param("GET", "/_twin/nothing", TOKEN, 404, id="unknown-route"),
        pytest.param("DELETE", "/_twin/state", TOKEN, 405, id="wrong-method"),
    ],
)
def test_refusals(admin: Admin, method: str, path: str, token: str | None, code: int) -> None:
    assert admin.call(method, path, token=token)[0] == code
