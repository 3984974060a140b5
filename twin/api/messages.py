"""Requests and responses as the API server's handlers see them, and Kubernetes ``Status`` bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from twin.api import protobuf
from twin.store import ApiError

JSON = "application/json"

_REASONS: dict[int, str] = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    406: "NotAcceptable", 409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid",
    429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}
_FAULT_MESSAGES: dict[int, str] = {
    429: "the server has received too many requests and has asked us to try again later",
    500: "an error on the server (\"injected fault\") has prevented the request from succeeding",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted, but may still be processing "
         "the request",
}


def dumps(obj: Any) -> bytes:
    """Compact JSON, as the API server sends it."""
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass
class Request:
    """One HTTP request, decoded."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    user: str = "system:anonymous"

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    @property
    def content_type(self) -> str:
        return self.header("content-type").split(";")[0].strip().lower()

    def json_body(self) -> Any:
        """The body as JSON (or YAML when sent as such, or Kubernetes protobuf decoded into the same dict:
        ``twin.api.protobuf``); 400 when it does not parse, 415 for a protobuf type the twin lacks."""
        if not self.body.strip():
            return None
        if self.content_type == protobuf.PROTOBUF:
            return protobuf.decode(self.body)
        try:
            if "yaml" in self.content_type and "apply-patch" not in self.content_type:
                import yaml

                return yaml.safe_load(self.body)
            return json.loads(self.body)
        except ValueError as e:
            raise ApiError(400, "BadRequest", f"couldn't get version/kind; json parse error: {e}") from e


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200, content_type: str = JSON) -> Response:
    return Response(status, dumps(obj), content_type)


def status_body(code: int, message: str, reason: str | None = None,
                details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason or _REASONS.get(code, "Unknown"),
                            "code": code}
    if details:
        body["details"] = details
    return body


def error_response(code: int, message: str, reason: str | None = None,
                   details: dict[str, Any] | None = None) -> Response:
    response = json_response(status_body(code, message, reason, details), code)
    if (details or {}).get("retryAfterSeconds"):
        response.headers["Retry-After"] = str((details or {})["retryAfterSeconds"])
    return response


def from_api_error(e: ApiError) -> Response:
    return error_response(e.code, e.message, e.reason, e.details or None)


def fault_response(code: int, retry_after: int | None = None) -> Response:
    """The answer to a request an injected fault intercepts. A 429 or 503 says when to retry
    (``retryAfterSeconds`` and the ``Retry-After`` header): ``retry_after``, else 1 s for a 429."""
    seconds = retry_after if retry_after is not None else (1 if code == 429 else None)
    details = {"retryAfterSeconds": seconds} if seconds and code in (429, 503) else None
    return error_response(code, _FAULT_MESSAGES.get(code, f"injected fault {code}"), None, details)


def success_status(code: int = 200, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                            "code": code}
    if details:
        body["details"] = details
    return body
