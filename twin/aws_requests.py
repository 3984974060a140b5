"""Which AWS API actions reached the twin's moto server, and with whose access key: for IAM least privilege.

Rules:
- ``AwsRequestRecorder`` wraps the server's WSGI application and records every request as an
  ``AwsRequest``; it changes nothing it serves.
- The service and the access key come from the SigV4 ``Authorization`` header's credential scope; the
  action is botocore's operation name: from the method and path for REST services (EKS), from the
  ``Action`` form field for query services (STS, and EC2: ``ec2:TerminateInstances``). IAM names actions
  ``<service>:<Operation>``.
- moto's own API (``/moto-api/...``) is not recorded.
- ``AwsFaultInjector`` answers an EKS request that an injected fault (``Faults.eks``) matches with that
  AWS error (its status, the ``x-amzn-ErrorType`` header and a JSON body, as EKS sends them) instead of
  moto; the recorder sits in front of it, so injected answers are recorded too.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from twin.faults import Faults

_CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/aws4_request")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class AwsRequest:
    """One request to the AWS endpoint."""

    service: str  # the signing name: "eks", "sts", "ec2"
    action: str  # the operation: "DescribeNodegroup" ("" when not recognised)
    access_key: str
    method: str
    path: str
    code: int

    @property
    def iam_action(self) -> str:
        """``eks:DescribeNodegroup``: the name an IAM policy gives the action."""
        return f"{self.service}:{self.action}"


class AwsRequestRecorder:
    """A WSGI middleware recording each request in ``log``."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.log: list[AwsRequest] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-api/"):
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        access_key, service = "", ""
        found = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if found:
            access_key, service = found.group(1), found.group(2)
        status: list[int] = [0]

        def recording_start_response(line: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = int(line.split()[0])
            return start_response(line, headers, exc_info) if exc_info else start_response(line, headers)

        result = self.app(environ, recording_start_response)
        action = action_name(service, method, path, body)
        self.log.append(AwsRequest(service, action, access_key, method, path, status[0]))
        return result


class AwsFaultInjector:
    """A WSGI middleware: EKS requests an active ``Faults.eks`` fault matches get its error, not moto's;
    EC2 requests one of ``Faults.ec2`` matches get it as EC2 sends errors (XML ``Response/Errors``)."""

    def __init__(self, app: WsgiApp, faults: Callable[[], Faults | None]) -> None:
        self.app = app
        self.faults = faults  # read per request: the twin may attach or replace its faults at any time

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        faults = self.faults()
        found = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if faults is not None and faults.ec2 and found is not None and found.group(2) == "ec2":
            return self._ec2(faults, environ, start_response)
        if faults is None or not faults.eks or found is None or found.group(2) != "eks":
            return self.app(environ, start_response)
        fault = faults.eks_fault_for(action_name("eks", environ.get("REQUEST_METHOD", ""),
                                                 environ.get("PATH_INFO", "")))
        if fault is None:
            return self.app(environ, start_response)
        status = int(fault.status or 500)
        payload = json.dumps({"__type": fault.code, "message": fault.message}).encode()
        start_response(f"{status} {HTTPStatus(status).phrase}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(payload))),
            ("x-amzn-ErrorType", fault.code)])
        return [payload]

    def _ec2(self, faults: Faults, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        fault = faults.eks_fault_for(action_name("ec2", environ.get("REQUEST_METHOD", ""),
                                                 environ.get("PATH_INFO", ""), body), "ec2")
        if fault is None:
            return self.app(environ, start_response)
        status = int(fault.status or 500)
        payload = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{fault.code}</Code>"
                   f"<Message>{fault.message}</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID>"
                   "</Response>").encode()
        start_response(f"{status} {HTTPStatus(status).phrase}", [
            ("Content-Type", "text/xml;charset=UTF-8"), ("Content-Length", str(len(payload)))])
        return [payload]


def action_name(service: str, method: str, path: str, body: bytes = b"") -> str:
    """The botocore operation a request calls; "" when none matches."""
    if not service:
        return ""
    routes = _routes(service)
    if routes is None:  # a query-protocol service: the action is a form field
        return (parse_qs(body.decode("utf-8", "replace")).get("Action") or [""])[0]
    for route_method, pattern, operation in routes:
        if route_method == method and pattern.fullmatch(path):
            return operation
    return ""


@cache
def _routes(service: str) -> list[tuple[str, re.Pattern[str], str]] | None:
    """(method, path pattern, operation) for a REST service, most literal characters first; None for query."""
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    if model.protocol in ("query", "ec2"):
        return None
    routes = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        uri = http["requestUri"].split("?")[0]
        parts = re.split(r"(\{[^}]+\})", uri)
        regex = "".join(
            (".+" if p.endswith("+}") else "[^/]+") if p.startswith("{") else re.escape(p) for p in parts
        )
        literal = sum(len(p) for p in parts if not p.startswith("{"))
        routes.append((literal, http["method"], re.compile(regex), name))
    routes.sort(key=lambda r: -r[0])
    return [(method, pattern, name) for _, method, pattern, name in routes]

