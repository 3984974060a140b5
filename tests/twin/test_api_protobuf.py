"""Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``), as Helm's release storage
sends them.

Specification:
- The decoder (``twin.api.protobuf.decode``) turns ``k8s\\x00`` + ``runtime.Unknown`` into the dict the
  object's JSON would give: a Secret with its full ObjectMeta, ``data`` as base64 strings; a ConfigMap;
  DeleteOptions (the exact 31 bytes Helm sends). Zero scalars are left out unless the Go field is a
  pointer; an empty Time is no timestamp; negative int64s and unknown fields are handled.
- A body without the magic or malformed is a 400; an unsupported type or a ``contentEncoding`` is a 415
  ``Status`` naming it. Over HTTP every verb decodes protobuf, and answers JSON.
- End to end: real Helm (helm_python) with the ``secret`` driver installs the stand-in chart into a twin;
  a new Config (and a new process) sees revision 1; an upgrade makes revision 2 and supersedes the
  first; uninstall removes the release Secrets and the chart's objects.

The test encoder below is the wire format at its smallest: varints, length-delimited fields.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from twin.api import protobuf
from twin.api.messages import Request, Response
from twin.apiserver import ApiServer
from twin.cluster import Twin
from twin.config import FAST
from twin.resources import CONFIGMAPS, SECRETS, for_kind
from twin.scenario import load_scenario
from twin.store import ApiError, Store

TOKEN = "twin-test-token"  # the api_server fixture's
CHART = Path(__file__).resolve().parents[2] / "twin" / "charts" / "cilium"
RELEASE, NAMESPACE = "cilium", "kube-system"


# ---- a tiny protobuf encoder -------------------------------------------------------------------------

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def f_bytes(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value


def f_str(number: int, value: str) -> bytes:
    return f_bytes(number, value.encode())


def f_int(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def f_map(number: int, entries: dict[str, bytes]) -> bytes:
    return b"".join(f_bytes(number, f_str(1, k) + f_bytes(2, v)) for k, v in entries.items())


def envelope(api_version: str, kind: str, raw: bytes, content_encoding: str = "") -> bytes:
    type_meta = f_str(1, api_version) + f_str(2, kind)
    return b"k8s\x00" + f_bytes(1, type_meta) + f_bytes(2, raw) + f_str(3, content_encoding) + f_str(4, "")


def time_(seconds: int, nanos: int = 0) -> bytes:
    return f_int(1, seconds) + (f_int(2, nanos) if nanos else b"")


def object_meta(**extra: bytes) -> bytes:
    """An ObjectMeta as client-go writes it: every string and int field, even empty, and the given ones."""
    fields = {1: f_str(1, ""), 2: f_str(2, ""), 3: f_str(3, ""), 4: f_str(4, ""), 5: f_str(5, ""),
              6: f_str(6, ""), 7: f_int(7, 0), 8: f_bytes(8, b"")}
    numbers = {"name": 1, "generateName": 2, "namespace": 3, "uid": 5, "resourceVersion": 6,
               "generation": 7, "creationTimestamp": 8}
    tail = b""
    for name, value in extra.items():
        if name in numbers:
            fields[numbers[name]] = value
        else:
            tail += value
    return b"".join(fields[n] for n in sorted(fields)) + tail


# ---- the decoder -------------------------------------------------------------------------------------

def test_a_secret_decodes_to_the_dict_its_json_gives() -> None:
    owner = (f_str(1, "Deployment") + f_str(3, "web") + f_str(4, "uid-1") + f_str(5, "apps/v1")
             + f_int(6, 1) + f_int(7, 0))
    meta = object_meta(
        name=f_str(1, "s1"), generateName=f_str(2, "s-"), namespace=f_str(3, "kube-system"),
        uid=f_str(5, "0d5e-uid"), resourceVersion=f_str(6, "42"), generation=f_int(7, 3),
        creationTimestamp=f_bytes(8, time_(1_700_000_000, 5)),
        labels=f_map(11, {"owner": b"helm", "status": b"deployed"}),
        annotations=f_map(12, {"note": b"x"}),
        owners=f_bytes(13, owner), finalizers=f_str(14, "a/b") + f_str(14, "c/d"))
    raw = (f_bytes(1, meta) + f_map(2, {"release": b"\x00\x01binary\xff", "empty": b""})
           + f_str(3, "helm.sh/release.v1") + f_map(4, {"plain": b"text"}) + f_int(5, 1))

    assert protobuf.decode(envelope("v1", "Secret", raw)) == {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": "s1", "generateName": "s-", "namespace": "kube-system", "uid": "0d5e-uid",
            "resourceVersion": "42", "generation": 3, "creationTimestamp": "2023-11-14T22:13:20Z",
            "labels": {"owner": "helm", "status": "deployed"}, "annotations": {"note": "x"},
            "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "uid-1", "apiVersion": "apps/v1",
                                 "controller": True, "blockOwnerDeletion": False}],
            "finalizers": ["a/b", "c/d"],
        },
        "data": {"release": base64.b64encode(b"\x00\x01binary\xff").decode(), "empty": ""},
        "type": "helm.sh/release.v1",
        "stringData": {"plain": "text"},
        "immutable": True,
    }


def test_zero_values_are_left_out_as_omitempty_does_but_pointer_fields_are_kept() -> None:
    raw = f_bytes(1, object_meta(name=f_str(1, "s1"))) + f_str(3, "") + f_int(5, 0)
    assert protobuf.decode(envelope("v1", "Secret", raw)) == {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}, "immutable": False}


def test_the_zero_time_in_seconds_is_no_timestamp_either() -> None:
    raw = f_bytes(1, object_meta(name=f_str(1, "s1"), creationTimestamp=f_bytes(8, time_(-62135596800))))
    assert protobuf.decode(envelope("v1", "Secret", raw))["metadata"] == {"name": "s1"}


def test_a_configmap_has_data_strings_and_binary_data_in_base64() -> None:
    raw = (f_bytes(1, object_meta(name=f_str(1, "cm"))) + f_map(2, {"k": b"v"})
           + f_map(3, {"bin": b"\xfe\xff"}) + f_int(4, 1))
    assert protobuf.decode(envelope("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"},
        "binaryData": {"bin": "/v8="}, "immutable": True}


def test_delete_options_as_helm_sends_them_are_empty_options() -> None:
    sent_by_helm = b'k8s\x00\n\x13\n\x02v1\x12\rDeleteOptions\x12\x00\x1a\x00"\x00'
    assert protobuf.decode(sent_by_helm) == {"apiVersion": "v1", "kind": "DeleteOptions"}


def test_delete_options_keep_a_zero_grace_period_and_a_negative_int64() -> None:
    raw = (f_int(1, 0) + f_bytes(2, f_str(1, "uid-1") + f_str(2, "7")) + f_str(4, "Foreground")
           + f_str(5, "All"))
    assert protobuf.decode(envelope("meta.k8s.io/v1", "DeleteOptions", raw)) == {
        "apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
        "preconditions": {"uid": "uid-1", "resourceVersion": "7"}, "propagationPolicy": "Foreground",
        "dryRun": ["All"]}
    assert varint(-1) == b"\xff" * 9 + b"\x01"  # ten bytes
    assert protobuf.decode(envelope("v1", "DeleteOptions", f_int(1, -1)))["gracePeriodSeconds"] == -1


def test_managed_fields_carry_their_fields_v1_json() -> None:
    entry = (f_str(1, "helm") + f_str(2, "Update") + f_str(3, "v1") + f_bytes(4, time_(0))
             + f_str(6, "FieldsV1") + f_bytes(7, f_bytes(1, b'{"f:data":{}}')))
    raw = f_bytes(1, object_meta(name=f_str(1, "s1"), managed=f_bytes(17, entry)))
    assert protobuf.decode(envelope("v1", "Secret", raw))["metadata"]["managedFields"] == [
        {"manager": "helm", "operation": "Update", "apiVersion": "v1", "time": "1970-01-01T00:00:00Z",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}]


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    unknown = f_int(90, 5) + varint(91 << 3 | 1) + b"\x00" * 8 + f_str(92, "x") + varint(93 << 3 | 5) + b"\x00" * 4
    raw = f_bytes(1, object_meta(name=f_str(1, "s1")) + unknown) + unknown
    assert protobuf.decode(envelope("v1", "Secret", raw)) == {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}}


@pytest.mark.parametrize(("body", "fragment"), [
    (b'{"kind":"Secret"}', "magic bytes"),
    (envelope("v1", "Secret", f_bytes(1, b"\x0a\x05ab")), "5 bytes announced"),
    (envelope("v1", "Secret", b"\x80"), "truncated varint"),
    (envelope("v1", "Secret", varint(1 << 3 | 3)), "wire type 3"),
    (envelope("v1", "Secret", f_int(1, 1)), "metadata: wire type 0"),
])
def test_a_malformed_body_is_a_400(body: bytes, fragment: str) -> None:
    with pytest.raises(ApiError) as e:
        protobuf.decode(body)
    assert (e.value.code, e.value.reason) == (400, "BadRequest")
    assert fragment in e.value.message


def test_an_unsupported_type_is_a_415_naming_it() -> None:
    with pytest.raises(ApiError) as e:
        protobuf.decode(envelope("v1", "Pod", f_bytes(1, object_meta(name=f_str(1, "p")))))
    assert (e.value.code, e.value.reason) == (415, "UnsupportedMediaType")
    assert "Pod (v1)" in e.value.message and "application/json" in e.value.message


def test_a_content_encoding_is_a_415() -> None:
    with pytest.raises(ApiError) as e:
        protobuf.decode(envelope("v1", "Secret", b"", content_encoding="gzip"))
    assert e.value.code == 415 and "'gzip'" in e.value.message


def test_request_json_body_decodes_protobuf_by_content_type() -> None:
    body = envelope("v1", "Secret", f_bytes(1, object_meta(name=f_str(1, "s1"))))
    req = Request("POST", "/api/v1/namespaces/default/secrets", {},
                  {"content-type": "application/vnd.kubernetes.protobuf"}, body)
    assert req.json_body() == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}}


# ---- over HTTP ---------------------------------------------------------------------------------------

def _send(api: ApiServer, method: str, path: str, body: bytes) -> tuple[int, str, Any]:
    req = urllib.request.Request(api.url + path, data=body, method=method, headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": protobuf.PROTOBUF,
        "Accept": "application/vnd.kubernetes.protobuf,application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], json.loads(e.read())


def _secret(name: str, status: str) -> bytes:
    meta = object_meta(name=f_str(1, name), labels=f_map(11, {"owner": b"helm", "status": status.encode()}))
    return envelope("v1", "Secret", f_bytes(1, meta) + f_map(2, {"release": b"H4sI"}) + f_str(3, "helm.sh/release.v1"))


def test_create_update_and_delete_take_protobuf_and_answer_json(api_server: ApiServer, store: Store) -> None:
    path = "/api/v1/namespaces/kube-system/secrets"
    code, content_type, created = _send(api_server, "POST", path, _secret("r.v1", "pending-install"))
    assert (code, content_type) == (201, "application/json")
    assert created["data"] == {"release": "SDRzSQ=="} and created["metadata"]["namespace"] == "kube-system"

    code, _, updated = _send(api_server, "PUT", f"{path}/r.v1", _secret("r.v1", "deployed"))
    assert code == 200 and updated["metadata"]["labels"]["status"] == "deployed"
    assert store.must_get(SECRETS, "kube-system", "r.v1")["type"] == "helm.sh/release.v1"

    code, _, status = _send(api_server, "DELETE", f"{path}/r.v1",
                            b'k8s\x00\n\x13\n\x02v1\x12\rDeleteOptions\x12\x00\x1a\x00"\x00')
    assert code == 200 and status["status"] == "Success"
    assert store.get(SECRETS, "kube-system", "r.v1") is None


def test_a_configmap_is_created_from_protobuf(api_server: ApiServer, store: Store) -> None:
    body = envelope("v1", "ConfigMap", f_bytes(1, object_meta(name=f_str(1, "cm"))) + f_map(2, {"k": b"v"}))
    assert _send(api_server, "POST", "/api/v1/namespaces/default/configmaps", body)[0] == 201
    assert store.must_get(CONFIGMAPS, "default", "cm")["data"] == {"k": "v"}


def test_an_unsupported_protobuf_type_is_answered_with_a_415_status(api_server: ApiServer) -> None:
    body = envelope("v1", "Pod", f_bytes(1, object_meta(name=f_str(1, "p"))))
    code, content_type, status = _send(api_server, "POST", "/api/v1/namespaces/default/pods", body)
    assert (code, content_type) == (415, "application/json")
    assert status["kind"] == "Status" and status["reason"] == "UnsupportedMediaType"
    assert "Pod (v1)" in status["message"]


# ---- real Helm with the secret driver ----------------------------------------------------------------

@dataclass
class HelmTwin:
    """A FAST twin, its kubeconfig, and the (method, path, content type, code) of every request served."""

    twin: Twin
    kubeconfig: Path
    requests: list[tuple[str, str, str, int]] = field(default_factory=list)

    def config(self) -> Any:
        from helm_python import Config

        return Config(namespace=NAMESPACE, storage_driver="secret", kubeconfig_path=self.kubeconfig)

    def release_secrets(self) -> dict[str, dict[str, Any]]:
        items, _ = self.twin.store.list(SECRETS, NAMESPACE)
        return {s["metadata"]["name"]: s for s in items
                if (s["metadata"].get("labels") or {}).get("owner") == "helm"}

    def protobuf_writes(self) -> list[tuple[str, str, int]]:
        return [(m, p, c) for m, p, t, c in self.requests if t == protobuf.PROTOBUF]


@pytest.fixture(scope="module")
def helm_twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HelmTwin]:
    twin = Twin(load_scenario("default"), timing=FAST)
    twin.start()
    try:
        path = tmp_path_factory.mktemp("helm") / "kubeconfig"
        twin.write_kubeconfig(path)
        ht = HelmTwin(twin, path)
        serve = twin.api.serve

        def recording(req: Request) -> tuple[Response | Any, Any]:
            result, record = serve(req)
            ht.requests.append((req.method, req.path, req.content_type, record.code))
            return result, record

        twin.api.serve = recording  # type: ignore[method-assign]
        yield ht
    finally:
        twin.stop()


def _helm(action: str, config: Any, **options: Any) -> dict[str, Any]:
    """``helm_install``/``helm_upgrade`` as ``Config.install``/``upgrade`` call them, plus the options
    their wrapper does not pass: no OpenAPI validation, client-side apply."""
    from helm_python import _native

    payload = _native.call_string(action, config._raw(), _native.HANDLE(0), _native.HANDLE(0), str(CHART),
                                  RELEASE, None, json.dumps({"namespace": NAMESPACE, **options}))
    result: dict[str, Any] = json.loads(payload)
    return result


def _release_record(secret: dict[str, Any]) -> dict[str, Any]:
    """Helm's release JSON out of its Secret: data.release is base64 (JSON) of base64 of gzip."""
    record: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(base64.b64decode(
        secret["data"]["release"]))))
    return record


def _chart_objects(manifest: str) -> list[tuple[Any, str | None, str]]:
    objects = [doc for doc in yaml.safe_load_all(manifest) if doc]
    out = []
    for doc in objects:
        rt = for_kind(doc["apiVersion"], doc["kind"])
        out.append((rt, doc["metadata"].get("namespace", NAMESPACE) if rt.namespaced else None,
                    doc["metadata"]["name"]))
    return out


class TestHelmReleaseWithTheSecretDriver:
    manifest = ""

    def test_1_install_stores_revision_1_as_a_protobuf_secret(self, helm_twin: HelmTwin) -> None:
        with helm_twin.config() as config:
            release = _helm("helm_install", config, disable_openapi_validation=True, server_side_apply=False)
        assert (release["revision"], release["status"]) == (1, "deployed")
        TestHelmReleaseWithTheSecretDriver.manifest = release["manifest"]

        path = f"/api/v1/namespaces/{NAMESPACE}/secrets"
        assert helm_twin.protobuf_writes() == [("POST", path, 201),
                                               ("PUT", f"{path}/sh.helm.release.v1.cilium.v1", 200)]
        secret = helm_twin.release_secrets()["sh.helm.release.v1.cilium.v1"]
        assert secret["type"] == "helm.sh/release.v1"
        assert {k: secret["metadata"]["labels"][k] for k in ("name", "owner", "status", "version")} == {
            "name": RELEASE, "owner": "helm", "status": "deployed", "version": "1"}
        record = _release_record(secret)
        assert (record["name"], record["version"], record["info"]["status"]) == (RELEASE, 1, "deployed")
        for rt, namespace, name in _chart_objects(self.manifest):
            assert helm_twin.twin.store.get(rt, namespace, name) is not None, (rt.kind, name)

    def test_2_a_new_config_and_a_new_process_see_revision_1(self, helm_twin: HelmTwin) -> None:
        with helm_twin.config() as config:
            assert [(r["name"], r["revision"], r["status"]) for r in config.list()] == [(RELEASE, 1, "deployed")]
            assert config.status(RELEASE)["revision"] == 1
        script = ("import json, sys; from helm_python import Config\n"
                  "with Config(namespace=sys.argv[2], storage_driver='secret', kubeconfig_path=sys.argv[1]) as c:\n"
                  "    print(json.dumps([r['revision'] for r in c.list()]))\n")
        done = subprocess.run([sys.executable, "-c", script, str(helm_twin.kubeconfig), NAMESPACE],
                              capture_output=True, text=True, timeout=60, env={**os.environ})
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == [1]

    def test_3_upgrade_makes_revision_2_and_supersedes_revision_1(self, helm_twin: HelmTwin) -> None:
        with helm_twin.config() as config:
            release = _helm("helm_upgrade", config, disable_openapi_validation=True, server_side_apply="false")
        assert (release["revision"], release["status"]) == (2, "deployed")
        secrets = helm_twin.release_secrets()
        assert {name: s["metadata"]["labels"]["status"] for name, s in secrets.items()} == {
            "sh.helm.release.v1.cilium.v1": "superseded", "sh.helm.release.v1.cilium.v2": "deployed"}
        with helm_twin.config() as config:
            assert [r["revision"] for r in config.history(RELEASE)] == [1, 2]
            assert config.status(RELEASE)["revision"] == 2

    def test_4_uninstall_removes_the_release_secrets_and_the_charts_objects(self, helm_twin: HelmTwin) -> None:
        helm_twin.requests.clear()
        with helm_twin.config() as config:
            assert config.uninstall(RELEASE)["release"]["status"] == "uninstalled"
            assert config.list(all_states=True) == []
        assert helm_twin.release_secrets() == {}
        path = f"/api/v1/namespaces/{NAMESPACE}/secrets/sh.helm.release.v1.cilium"
        assert [(m, p) for m, p, _ in helm_twin.protobuf_writes() if m == "DELETE"] == [
            ("DELETE", f"{path}.v1"), ("DELETE", f"{path}.v2")]
        assert self.manifest
        for rt, namespace, name in _chart_objects(self.manifest):
            assert helm_twin.twin.store.get(rt, namespace, name) is None, (rt.kind, name)
