"""EC2 ``TerminateInstances`` for the twin's node instances, in front of moto: a WSGI middleware.

Rules:
- A node's EC2 instance is the id at the end of its ``spec.providerID`` (``aws:///<az>/<instance-id>``);
  the twin's instances are those of the Node objects in its store. They are not moto EC2 instances.
- ``Ec2Api`` answers ``TerminateInstances`` (EC2's query protocol: the ``Action`` and ``InstanceId.N``
  form fields) for them, in EC2's XML: per instance its ``previousState`` and ``currentState``. A running
  instance (its Node present, not terminated before) goes ``running`` (16) -> ``shutting-down`` (32);
  one terminated before answers again without a change (idempotent, as EC2 does): ``shutting-down`` while
  its Node is still there, ``terminated`` (48) once the Node is gone. Any other request goes to moto
  unchanged.
- A request naming any other id changes nothing and fails as EC2 fails it: HTTP 400
  ``InvalidInstanceID.NotFound`` ("The instance ID 'i-...' does not exist"); no id at all is
  ``MissingParameter``. ``DryRun=true`` answers 412 ``DryRunOperation`` once the ids are known.
- What was terminated, and when, is EC2's state (``ec2_instances(store)``, one per store): the node-group
  controller reads it to take the node away and let the Auto Scaling group replace it
  (``twin.controllers.nodegroups``). Terminating drains nothing.
- The operation is recognised by its ``Action`` field (``twin.aws_requests.action_name``), as the recorder
  names it, so in the server's chain (recorder -> fault injector -> this -> ...) it is recorded as
  ``ec2:TerminateInstances``.
"""

from __future__ import annotations

import io
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from twin.aws_requests import WsgiApp, action_name
from twin.resources import NODES
from twin.store import Obj, Store

XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"
RUNNING, SHUTTING_DOWN, TERMINATED = (16, "running"), (32, "shutting-down"), (48, "terminated")
_CREDENTIAL = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")
_INSTANCE_ID = re.compile(r"InstanceId\.(\d+)")


def instance_id(node: Obj) -> str | None:
    """The node's EC2 instance id, from ``spec.providerID`` (``aws:///<az>/<id>``); None without one."""
    provider = (node.get("spec") or {}).get("providerID") or ""
    if not provider.startswith("aws://"):
        return None
    return provider.rstrip("/").rsplit("/", 1)[-1] or None


class Ec2Instances:
    """Which of the twin's instances were terminated, and when (monotonic seconds); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._terminated: dict[str, float] = {}

    def terminate(self, instance: str) -> bool:
        """Mark ``instance`` terminated now; False (and no change) when it already was."""
        with self._lock:
            if instance in self._terminated:
                return False
            self._terminated[instance] = time.monotonic()
            return True

    def terminated(self) -> dict[str, float]:
        """Instance id -> monotonic time it was terminated."""
        with self._lock:
            return dict(self._terminated)


_BY_STORE: weakref.WeakKeyDictionary[Store, Ec2Instances] = weakref.WeakKeyDictionary()
_BY_STORE_LOCK = threading.Lock()


def ec2_instances(store: Store) -> Ec2Instances:
    """EC2's state of the instances behind ``store``'s nodes (the same object for the same store)."""
    with _BY_STORE_LOCK:
        found = _BY_STORE.get(store)
        if found is None:
            found = _BY_STORE[store] = Ec2Instances()
        return found


class Ec2Error(Exception):
    """An EC2 error answer: HTTP ``status``, ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Ec2Api:
    """A WSGI middleware answering ``TerminateInstances`` for ``store``'s nodes; the rest goes to ``app``."""

    def __init__(self, app: WsgiApp, store: Store | None) -> None:
        self.app = app
        self.store = store

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        found = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if found is None or found.group(1) != "ec2":
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        if action_name("ec2", environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), raw) != (
                "TerminateInstances"):
            return self.app(environ, start_response)
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        request_id = str(uuid.uuid4())
        try:
            items = self.terminate(form)
        except Ec2Error as err:
            body = (f"<Response><Errors><Error><Code>{escape(err.code)}</Code><Message>{escape(err.message)}"
                    f"</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
            return _send(start_response, err.status, body)
        rows = "".join(
            f"<item><instanceId>{escape(iid)}</instanceId>{_state('currentState', current)}"
            f"{_state('previousState', previous)}</item>"
            for iid, previous, current in items
        )
        return _send(start_response, 200, (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<TerminateInstancesResponse xmlns="{XMLNS}">'
            f"<requestId>{request_id}</requestId><instancesSet>{rows}</instancesSet>"
            "</TerminateInstancesResponse>"))

    def terminate(self, form: dict[str, str]) -> list[tuple[str, tuple[int, str], tuple[int, str]]]:
        """(instance id, previous state, current state) per requested instance; Ec2Error for a bad request."""
        numbered = sorted((int(m.group(1)), v) for k, v in form.items() if (m := _INSTANCE_ID.fullmatch(k)))
        ids = list(dict.fromkeys(v for _, v in numbered))  # in request order, each once
        if not ids:
            raise Ec2Error(400, "MissingParameter", "The request must contain the parameter InstanceId")
        if self.store is None:
            raise _not_found(ids)
        instances = ec2_instances(self.store)
        with self.store.lock:  # the nodes as of one moment: a controller may delete one meanwhile
            present = {i for i in map(instance_id, self.store.iter_all(NODES)) if i}
            terminated = instances.terminated()
            unknown = [i for i in ids if i not in present and i not in terminated]
            if unknown:
                raise _not_found(unknown)
            if form.get("DryRun", "").lower() == "true":
                raise Ec2Error(412, "DryRunOperation",
                               "Request would have succeeded, but DryRun flag is set.")
            items = []
            for iid in ids:
                if instances.terminate(iid):
                    items.append((iid, RUNNING, SHUTTING_DOWN))
                else:
                    state = SHUTTING_DOWN if iid in present else TERMINATED
                    items.append((iid, state, state))
        return items


def _not_found(ids: list[str]) -> Ec2Error:
    if len(ids) == 1:
        return Ec2Error(400, "InvalidInstanceID.NotFound", f"The instance ID '{ids[0]}' does not exist")
    return Ec2Error(400, "InvalidInstanceID.NotFound", f"The instance IDs '{', '.join(ids)}' do not exist")


def _state(tag: str, state: tuple[int, str]) -> str:
    return f"<{tag}><code>{state[0]}</code><name>{state[1]}</name></{tag}>"


def _send(start_response: Callable[..., Any], status: int, body: str) -> list[bytes]:
    payload = body.encode()
    start_response(f"{status} {HTTPStatus(status).phrase}", [
        ("Content-Type", "text/xml;charset=UTF-8"), ("Content-Length", str(len(payload)))])
    return [payload]
