"""Temporary versus permanent failures (kopf's split): a retry helps the first, never the second.

Logic modules raise these; operators and sensors translate ``PermanentError`` into Airflow's
``AirflowFailException`` (no retries) and let ``TemporaryError`` propagate (retries help).
"""

from __future__ import annotations

from typing import Any


class MigrationError(Exception):
    """Base of the package's own errors."""


class PermanentError(MigrationError):
    """Retrying cannot help: bad input, a missing node group, a foreign Cilium install. Says what to fix."""


class TemporaryError(MigrationError):
    """Retrying may help: API throttling (429), server errors (5xx), a node not Ready yet."""


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


def is_temporary_status(status: int | None) -> bool:
    """429 and 5xx are temporary; every other status is the caller's mistake or a missing object."""
    return status is not None and (status == 429 or status >= 500)


def is_not_found(exc: BaseException) -> bool:
    """404 from Kubernetes, or a ResourceNotFoundException from EKS."""
    if api_status(exc) == 404:
        return True
    response: Any = getattr(exc, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") == "ResourceNotFoundException"
