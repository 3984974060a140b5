"""The EKS add-on APIs over HTTP, in front of moto (which serves none of them): a WSGI middleware.

Rules:
- ``AddonApi`` answers ``CreateAddon`` (``POST /clusters/{name}/addons``), ``DescribeAddon``
  (``GET /clusters/{name}/addons/{addonName}``), ``ListAddons`` (``GET /clusters/{name}/addons``),
  ``UpdateAddon`` (``POST /clusters/{name}/addons/{addonName}/update``), ``DeleteAddon``
  (``DELETE /clusters/{name}/addons/{addonName}?preserve=``) and ``DescribeUpdate`` of an add-on's update
  (``GET /clusters/{name}/updates/{id}?addonName=``) from ``twin.addons.AddonManager``, in EKS's REST-JSON
  shapes. Every other request goes to moto unchanged.
- Operations are recognised by botocore's EKS model (``twin.aws_requests.action_name``), as the recorder
  names them; so in the server's chain (recorder -> fault injector -> this -> moto) add-on calls are
  recorded as ``eks:CreateAddon``... and injected EKS faults answer them too.
- Errors as EKS sends them: the status, an ``x-amzn-ErrorType`` header and a JSON body with ``message``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

from twin.addons import AddonError, AddonManager, invalid
from twin.aws_requests import WsgiApp, action_name

Obj = dict[str, Any]
OPERATIONS = frozenset({"CreateAddon", "DescribeAddon", "ListAddons", "UpdateAddon", "DeleteAddon"})


class AddonApi:
    """A WSGI middleware serving the add-on operations from ``addons``; the rest goes to ``app``."""

    def __init__(self, app: WsgiApp, addons: AddonManager) -> None:
        self.app = app
        self.addons = addons

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        operation = action_name("eks", method, path) if path.startswith("/clusters/") else ""
        if operation not in OPERATIONS and not (operation == "DescribeUpdate" and query.get("addonName")):
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        parts = [unquote(p) for p in path.strip("/").split("/")]
        try:
            body = json.loads(raw) if raw else {}
            with self.addons.lock:  # answered from one state: the manager's timers change it too
                status, answer = self.handle(operation, parts, query, body)
        except AddonError as err:
            return _send(start_response, err.status, {"message": err.message}, err.code)
        except ValueError as err:  # a body that is not JSON, a nextToken that is not ours
            return _send(start_response, 400, {"message": f"invalid request: {err}"}, "InvalidParameterException")
        return _send(start_response, status, answer)

    def handle(self, operation: str, parts: list[str], query: dict[str, str], body: Obj) -> tuple[int, Obj]:
        """(status, JSON answer) for one add-on operation; ``parts`` is the path split at "/"."""
        cluster = parts[1]
        if operation == "ListAddons":
            names = self.addons.names(cluster)
            start, size = int(query.get("nextToken") or 0), int(query.get("maxResults") or 100)
            token = str(start + size) if start + size < len(names) else None
            return 200, {"addons": names[start:start + size], **({"nextToken": token} if token else {})}
        if operation == "CreateAddon":
            if not body.get("addonName"):
                raise invalid("addonName is required")
            addon = self.addons.create(
                cluster, body["addonName"], version=body.get("addonVersion"),
                configuration=body.get("configurationValues"), resolve_conflicts=body.get("resolveConflicts"),
                service_account_role_arn=body.get("serviceAccountRoleArn"), tags=body.get("tags"))
            return 200, {"addon": addon.to_json()}
        if operation == "DescribeUpdate":
            return 200, {"update": self.addons.describe_update(cluster, query["addonName"], parts[3]).to_json()}
        name = parts[3]
        if operation == "DescribeAddon":
            return 200, {"addon": self.addons.describe(cluster, name).to_json()}
        if operation == "UpdateAddon":
            update = self.addons.update(
                cluster, name, version=body.get("addonVersion"), configuration=body.get("configurationValues"),
                resolve_conflicts=body.get("resolveConflicts"),
                service_account_role_arn=body.get("serviceAccountRoleArn"))
            return 200, {"update": update.to_json()}
        preserve = query.get("preserve", "false").lower() == "true"
        return 200, {"addon": self.addons.delete(cluster, name, preserve=preserve).to_json()}


def _send(start_response: Callable[..., Any], status: int, body: Obj, error_type: str | None = None) -> list[bytes]:
    payload = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [payload]
