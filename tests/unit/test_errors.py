"""Temporary versus permanent: which API statuses a retry can help."""

from __future__ import annotations

import pytest

from cilium_migration.errors import api_status, is_not_found, is_temporary_status


class KubeError(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class AwsError(Exception):
    def __init__(self, code: str, status: int) -> None:
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


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
