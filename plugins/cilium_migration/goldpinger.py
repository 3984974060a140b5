"""goldpinger, the connectivity checker: deploy the runbook's objects, restart it, read ``/check_all``.

``/check_all`` is read through the API server's service proxy (no load balancer needed); the verdict
itself is ``cilium_migration.mesh.evaluate``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from cilium_migration.audit import Change
from cilium_migration.clients import items, read_or_none
from cilium_migration.mesh import CheckAllEntry

MANIFEST = Path(__file__).with_name("manifests") / "goldpinger.yaml"
NAME = "goldpinger"
LABEL_SELECTOR = "app.kubernetes.io/name=goldpinger"
SERVICE_PORT = "8080"

Obj = dict[str, Any]


def manifests() -> list[Obj]:
    import yaml

    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def _methods(clients: Any, kind: str) -> tuple[Any, Any]:
    """(read, create) client methods for a manifest kind."""
    table = {
        "ServiceAccount": (clients.core, "namespaced_service_account"),
        "Service": (clients.core, "namespaced_service"),
        "Role": (clients.rbac, "namespaced_role"),
        "RoleBinding": (clients.rbac, "namespaced_role_binding"),
        "DaemonSet": (clients.apps, "namespaced_daemon_set"),
        "Deployment": (clients.apps, "namespaced_deployment"),
    }
    api, suffix = table[kind]
    return getattr(api, f"read_{suffix}"), getattr(api, f"create_{suffix}")


def deploy(clients: Any, namespace: str, *, dry_run: bool = False) -> list[Change]:
    """Create each goldpinger object that is missing; existing ones are left as they are.

    In a dry run, a RoleBinding whose Role does not exist yet (the dry run did not create it) is only
    recorded: the API server checks a binding against its role's rules, so it would refuse it as 404."""
    changes = []
    dry_created: set[tuple[str, str]] = set()
    for obj in manifests():
        kind, name = obj["kind"], obj["metadata"]["name"]
        read, create = _methods(clients, kind)
        if read_or_none(read, name, namespace) is not None:
            continue
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
        ref = obj.get("roleRef") or {}
        if not (dry_run and (ref.get("kind"), ref.get("name")) in dry_created):
            create(namespace, obj, dry_run="All" if dry_run else None, _preload_content=False)
        dry_created.add((kind, name))
        changes.append(Change("create", kind, name, namespace, before=None, after={"manifest": "goldpinger.yaml"},
                              dry_run=dry_run))
    return changes


def restart(apps: Any, namespace: str, kind: str, token: str, *, dry_run: bool = False) -> list[Change]:
    """``kubectl rollout restart`` with a token instead of a timestamp: a retry with the same token is a
    no-op, so a task re-run does not restart twice."""
    from cilium_migration.readiness import RESTARTED_AT

    suffix = "namespaced_daemon_set" if kind == "DaemonSet" else "namespaced_deployment"
    obj = read_or_none(getattr(apps, f"read_{suffix}"), NAME, namespace)
    if obj is None:
        if dry_run:  # a dry run did not create it: say what would happen
            return [Change("restart", kind, NAME, namespace, before=None, after={RESTARTED_AT: token}, dry_run=True)]
        from cilium_migration.errors import PermanentError

        raise PermanentError(f"{kind} {namespace}/{NAME} not found: deploy goldpinger (deploy_goldpinger=true) "
                             "or fix goldpinger_namespace")
    annotations = ((obj.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
    before = annotations.get(RESTARTED_AT)
    if before == token:
        return []
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: token}}}}}
    getattr(apps, f"patch_{suffix}")(NAME, namespace, body, dry_run="All" if dry_run else None, _preload_content=False)
    return [Change("restart", kind, NAME, namespace, before={RESTARTED_AT: before}, after={RESTARTED_AT: token},
                   dry_run=dry_run)]


def from_before_restart(apps: Any, namespace: str, pod_list: list[Obj]) -> list[str]:
    """The live goldpinger pods whose ``restartedAt`` differs from their DaemonSet's or Deployment's
    current template: after ``restart`` they still run, healthy, until the rollout replaces them, and a
    mesh judged on them would pass on pods from before the restart."""
    from cilium_migration.readiness import RESTARTED_AT, controller_of, name_of

    wanted: dict[str, str | None] = {}  # pod owner kind -> restartedAt of its workload's template
    for owner, read in (("DaemonSet", apps.read_namespaced_daemon_set), ("ReplicaSet", apps.read_namespaced_deployment)):
        obj = read_or_none(read, NAME, namespace) or {}
        template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
        wanted[owner] = (template.get("annotations") or {}).get(RESTARTED_AT)
    stale = []
    for pod in pod_list:
        meta = pod.get("metadata") or {}
        kind = (controller_of(pod) or {}).get("kind")
        if meta.get("deletionTimestamp") or kind not in wanted:
            continue
        if (meta.get("annotations") or {}).get(RESTARTED_AT) != wanted[kind]:
            stale.append(name_of(pod))
    return sorted(stale)


def pods(core: Any, namespace: str) -> list[Obj]:
    return items(core.list_namespaced_pod, namespace, label_selector=LABEL_SELECTOR)


def check_all(core: Any, namespace: str) -> Obj:
    """``GET .../services/goldpinger:8080/proxy/check_all``, parsed whole (the client would return a repr).
    The mesh gate streams it instead (``check_all_responses``): at 1,000 pods it is 200 MB of JSON."""
    resp = core.connect_get_namespaced_service_proxy_with_path(
        f"{NAME}:{SERVICE_PORT}", namespace, "check_all", _preload_content=False)
    return dict(json.loads(resp.data))


class CheckAllError(ValueError):
    """``/check_all``'s answer could not be read: cut short, or not goldpinger's JSON."""


CHUNK = 1 << 20  # bytes read at a time from the proxy


def check_all_responses(core: Any, namespace: str) -> Iterator[tuple[str, CheckAllEntry]]:
    """``/check_all``'s ``responses`` members, one instance's answer at a time as the body arrives (only
    the fields the verdict reads are decoded): memory stays at one instance's answer plus a chunk, not
    the N x N answer. The request is made here (an API error, such as 503 while no instance is Ready,
    raises at once); reading raises ``CheckAllError``."""
    resp = core.connect_get_namespaced_service_proxy_with_path(
        f"{NAME}:{SERVICE_PORT}", namespace, "check_all", _preload_content=False)
    return _streamed(resp)


def _streamed(resp: Any) -> Iterator[tuple[str, CheckAllEntry]]:
    done = False
    try:
        yield from object_members(resp.stream(CHUNK), "responses", CheckAllEntry)
        done = True
    except CheckAllError:
        raise
    except Exception as exc:  # the connection broke off, or the JSON does not parse
        raise CheckAllError(f"goldpinger /check_all answer unreadable: {exc}") from exc
    finally:
        if done:
            resp.release_conn()
        else:
            resp.close()


_WS = re.compile(rb"[ \t\r\n]*")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_TRAILING = re.compile(r"trailing characters \(byte (\d+)\)")


class _Reader:
    """A JSON text read from byte chunks, a value at a time: ``msgspec`` finds where each value ends
    (scanning it as ``Raw``) and decodes exactly that slice into the type asked for."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = iter(chunks)
        self.buf, self.pos, self.eof = b"", 0, False

    def more(self) -> bool:
        for chunk in self.chunks:
            if chunk:
                self.buf, self.pos = self.buf[self.pos:] + chunk, 0
                return True
        self.eof = True
        return False

    def peek(self) -> int:
        while True:
            match = _WS.match(self.buf, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                raise CheckAllError("goldpinger /check_all answer cut short")

    def expect(self, char: bytes) -> None:
        if self.peek() != char[0]:
            raise CheckAllError(f"goldpinger /check_all answer is not the JSON expected: {chr(self.peek())!r} "
                                f"where {char.decode()!r} belongs")
        self.pos += 1

    def string(self) -> str:
        self.peek()
        while (match := _STRING.match(self.buf, self.pos)) is None:
            if self.buf[self.pos:self.pos + 1] != b'"' or not self.more():
                raise CheckAllError("goldpinger /check_all answer: a key is not a JSON string")
        self.pos = match.end()
        return str(json.loads(match.group()))

    def value(self, kind: Any) -> Any:
        self.peek()
        while True:
            view = memoryview(self.buf)[self.pos:]
            try:
                msgspec.json.decode(view, type=msgspec.Raw)
            except msgspec.DecodeError as exc:
                if (found := _TRAILING.search(str(exc))) is not None:  # the value ends before the buffer does
                    return self._decode(view, int(found.group(1)), kind)
                if "truncated" in str(exc) and self.more():
                    continue
                raise CheckAllError(f"goldpinger /check_all answer is not JSON: {exc}") from exc
            if self.eof or not self.more():  # ends exactly at the buffer's end (a number may go on)
                end = len(view)
                self.pos += end
                return msgspec.json.decode(view[:end], type=kind)

    def _decode(self, view: memoryview, trailing: int, kind: Any) -> Any:
        for end in (trailing - 1, trailing):  # msgspec names the trailing byte, counted from 1
            try:
                value = msgspec.json.decode(view[:end], type=kind)
            except msgspec.DecodeError:
                continue
            self.pos += end
            return value
        raise CheckAllError("goldpinger /check_all answer: a value could not be delimited")


def object_members(chunks: Iterable[bytes], key: str, kind: Any) -> Iterator[tuple[str, Any]]:
    """The members (name, value as ``kind``) of the object at ``key`` in the top-level object of the JSON
    text in ``chunks``, one at a time; other top-level members are scanned past, not built."""
    reader = _Reader(chunks)
    reader.expect(b"{")
    if reader.peek() == ord("}"):
        return
    while True:
        name = reader.string()
        reader.expect(b":")
        if name == key:
            reader.expect(b"{")
            if reader.peek() != ord("}"):
                while True:
                    member = reader.string()
                    reader.expect(b":")
                    yield member, reader.value(kind)
                    if reader.peek() != ord(","):
                        break
                    reader.pos += 1
            reader.expect(b"}")
        else:
            reader.value(msgspec.Raw)
        if reader.peek() != ord(","):
            break
        reader.pos += 1
    reader.expect(b"}")
