"""Temporary versus permanent: which API errors a retry can help.

Covers: the statuses read from Kubernetes and botocore errors; ``classify`` for Kubernetes statuses, EKS
error codes (throttling is a 400, an update in progress a 409: both temporary), connection errors and
our own error types; the server's message is what we quote.
"""

from __future__ import annotations

import pytest

from cilium_migration.errors import (
    Kind,
    PermanentError,
    TemporaryError,
    api_status,
    classify,
    error_message,
    is_not_found,
    is_temporary_status,
)


class KubeError(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class AwsError(Exception):
    def __init__(self, code: str, status: int, message: str = "") -> None:
        self.response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}


@pytest.mark.parametrize(("status", "temporary"), [
    pytest.param(429, True, id="throttled"), pytest.param(500, True, id="server-error"),
    pytest.param(503, True, id="unavailable"), pytest.param(404, False, id="not-found"),
    pytest.param(422, False, id="invalid"), pytest.param(None, False, id="no-status"),
])
def test_temporary_statuses(status: int | None, temporary: bool) -> None:
    assert is_temporary_status(status) is temporary


def test_statuses_are_read_from_kubernetes_and_botocore_errors() -> None:
    assert api_status(KubeError(429)) == 429
    assert api_status(AwsError("ThrottlingException", 400)) == 400
    assert api_status(ValueError()) is None


def test_not_found_from_either_api() -> None:
    assert is_not_found(KubeError(404))
    assert is_not_found(AwsError("ResourceNotFoundException", 404))
    assert not is_not_found(AwsError("InvalidParameterException", 400))


@pytest.mark.parametrize(("exc", "kind"), [
    pytest.param(KubeError(429), Kind.TEMPORARY, id="kube-429"),
    pytest.param(KubeError(500), Kind.TEMPORARY, id="kube-500"),
    pytest.param(KubeError(504), Kind.TEMPORARY, id="kube-504"),
    pytest.param(KubeError(403), Kind.PERMANENT, id="kube-403-forbidden"),
    pytest.param(KubeError(422), Kind.PERMANENT, id="kube-422-invalid"),
    pytest.param(KubeError(400), Kind.PERMANENT, id="kube-400-bad-request"),
    pytest.param(KubeError(404), Kind.UNKNOWN, id="kube-404-may-be-a-race"),
    pytest.param(KubeError(401), Kind.UNKNOWN, id="kube-401-token-may-refresh"),
    pytest.param(KubeError(409), Kind.UNKNOWN, id="kube-409"),
    pytest.param(AwsError("ResourceInUseException", 409), Kind.TEMPORARY, id="eks-update-in-progress"),
    pytest.param(AwsError("ThrottlingException", 400), Kind.TEMPORARY, id="eks-throttling-400"),
    pytest.param(AwsError("TooManyRequestsException", 429), Kind.TEMPORARY, id="eks-too-many-requests"),
    pytest.param(AwsError("ServerException", 500), Kind.TEMPORARY, id="eks-server-error"),
    pytest.param(AwsError("SomethingNew", 503), Kind.TEMPORARY, id="eks-any-5xx"),
    pytest.param(AwsError("ResourceNotFoundException", 404), Kind.PERMANENT, id="eks-not-found"),
    pytest.param(AwsError("InvalidParameterException", 400), Kind.PERMANENT, id="eks-invalid-parameter"),
    pytest.param(AwsError("AccessDeniedException", 403), Kind.PERMANENT, id="eks-access-denied"),
    pytest.param(AwsError("ExpiredTokenException", 403), Kind.UNKNOWN, id="eks-credentials-may-refresh"),
    pytest.param(ConnectionRefusedError(), Kind.TEMPORARY, id="connection-refused"),
    pytest.param(TemporaryError("node not Ready yet"), Kind.TEMPORARY, id="ours-temporary"),
    pytest.param(PermanentError("node group missing"), Kind.PERMANENT, id="ours-permanent"),
    pytest.param(ValueError("a bug"), Kind.UNKNOWN, id="anything-else"),
])
def test_classify(exc: BaseException, kind: Kind) -> None:
    assert classify(exc) is kind


def test_urllib3_connection_errors_are_temporary() -> None:
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    assert classify(MaxRetryError(None, "/api/v1/nodes", NewConnectionError(None, "refused"))) is Kind.TEMPORARY  # type: ignore[arg-type]


def test_the_servers_message_is_quoted() -> None:
    assert error_message(AwsError("ResourceInUseException", 409, "update abc in progress")) == "update abc in progress"
    assert error_message(ValueError("first line\nsecond")) == "first line"
