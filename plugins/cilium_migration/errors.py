"""Temporary versus permanent failures (kopf's split): a retry helps the first, never the second.

Logic modules raise these; operators and sensors translate ``PermanentError`` into Airflow's
``AirflowFailException`` (no retries) and let ``TemporaryError`` propagate (retries help).

Rules for errors the APIs raise (``classify``):
- Temporary: 429 and 5xx from either API; EKS throttling (``ThrottlingException`` is a 400) and
  ``ResourceInUseException`` (409: another update of the node group is in progress); connection errors.
- Permanent: a request the server will refuse again: Kubernetes 400, 403, 405, 422; EKS not found,
  invalid parameter or request, access denied.
- Anything else is unknown: the task's ordinary retries decide.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class MigrationError(Exception):
    """Base of the package's own errors."""


class PermanentError(MigrationError):
    """Retrying cannot help: bad input, a missing node group, a foreign Cilium install. Says what to fix."""


class TemporaryError(MigrationError):
    """Retrying may help: API throttling (429), server errors (5xx), a node not Ready yet."""


class Kind(Enum):
    """What a retry can do about an error."""

    TEMPORARY = "temporary"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


TEMPORARY_EKS_CODES = frozenset({
    "ResourceInUseException", "ThrottlingException", "Throttling", "TooManyRequestsException",
    "RequestLimitExceeded", "ServerException", "ServiceUnavailableException", "ServiceUnavailable",
    "InternalFailure", "InternalServerError", "RequestTimeout", "RequestTimeoutException",
})
PERMANENT_EKS_CODES = frozenset({
    "ResourceNotFoundException", "NotFoundException", "InvalidParameterException", "InvalidRequestException",
    "ValidationException", "AccessDeniedException", "AccessDeniedFault", "UnauthorizedOperation",
    "ClientException",
})
PERMANENT_KUBE_STATUSES = frozenset({400, 403, 405, 422})


def api_status(exc: BaseException) -> int | None:
    """The HTTP status of a Kubernetes ``ApiException`` or a botocore ``ClientError``; None otherwise."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(code) if code is not None else None
    return None


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (``ThrottlingException``...); None otherwise."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def error_message(exc: BaseException) -> str:
    """The server's own message: botocore's ``Error.Message``, else the exception's text (first line)."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error", {}).get("Message"):
        return str(response["Error"]["Message"])
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def is_temporary_status(status: int | None) -> bool:
    """429 and 5xx are temporary; every other status is the caller's mistake or a missing object."""
    return status is not None and (status == 429 or status >= 500)


def is_not_found(exc: BaseException) -> bool:
    """404 from Kubernetes, or a ResourceNotFoundException from EKS."""
    if api_status(exc) == 404:
        return True
    return error_code(exc) == "ResourceNotFoundException"


def _is_connection_error(exc: BaseException) -> bool:
    """The API could not be reached: urllib3's and botocore's connection errors, and the OS's."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"MaxRetryError", "NewConnectionError", "ProtocolError", "EndpointConnectionError",
                         "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError"})


def classify(exc: BaseException) -> Kind:
    """Whether a retry can help (see the module's rules); our own error types say it themselves."""
    if isinstance(exc, TemporaryError):
        return Kind.TEMPORARY
    if isinstance(exc, PermanentError):
        return Kind.PERMANENT
    code = error_code(exc)
    if code is not None:
        if code in TEMPORARY_EKS_CODES:
            return Kind.TEMPORARY
        if code in PERMANENT_EKS_CODES:
            return Kind.PERMANENT
    status = api_status(exc)
    if is_temporary_status(status):
        return Kind.TEMPORARY
    if code is None and status in PERMANENT_KUBE_STATUSES:
        return Kind.PERMANENT
    if status is None and _is_connection_error(exc):
        return Kind.TEMPORARY
    return Kind.UNKNOWN
