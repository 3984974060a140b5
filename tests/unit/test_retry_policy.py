"""Task retries: what retrying cannot fix fails at once, what it can retries after exponential backoff.

Covers: the policy's decision per kind of error (ours, Kubernetes and EKS API errors, anything else);
the settings every task gets (``TASK_RETRIES``) and the delays Airflow derives from them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk.definitions.retry_policy import RetryAction
from botocore.exceptions import ClientError
from kubernetes.client.exceptions import ApiException

from cilium_migration.errors import PermanentError, TemporaryError
from cilium_migration.retry_policy import RETRY_POLICY, TASK_RETRIES, MigrationRetryPolicy


def _aws(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} says so"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "UpdateNodegroupConfig")


@pytest.mark.parametrize(("exc", "action"), [
    pytest.param(PermanentError("node group 'ng-x' not found"), RetryAction.FAIL, id="permanent"),
    pytest.param(ApiException(status=403, reason="Forbidden"), RetryAction.FAIL, id="kube-forbidden"),
    pytest.param(_aws("InvalidParameterException", 400), RetryAction.FAIL, id="eks-invalid-parameter"),
    pytest.param(TemporaryError("eviction still refused"), RetryAction.RETRY, id="temporary"),
    pytest.param(ApiException(status=503, reason="Service Unavailable"), RetryAction.RETRY, id="kube-503"),
    pytest.param(_aws("ResourceInUseException", 409), RetryAction.RETRY, id="eks-update-in-progress"),
    pytest.param(_aws("ThrottlingException", 400), RetryAction.RETRY, id="eks-throttled"),
    pytest.param(ConnectionResetError(), RetryAction.RETRY, id="connection-reset"),
    pytest.param(RuntimeError("unexpected"), RetryAction.DEFAULT, id="unknown-gets-ordinary-retries"),
])
def test_the_policy_decides_by_what_a_retry_can_do(exc: BaseException, action: RetryAction) -> None:
    decision = MigrationRetryPolicy().evaluate(exc, try_number=1, max_tries=4)
    assert decision.action is action
    assert decision.retry_delay is None, "the task's exponential backoff decides the delay"


def test_a_failure_says_why() -> None:
    decision = RETRY_POLICY.evaluate(_aws("AccessDeniedException", 403), try_number=1, max_tries=4)
    assert decision.reason == "permanent: AccessDeniedException says so"


def test_every_task_retries_with_exponential_backoff_and_the_policy() -> None:
    assert TASK_RETRIES["retries"] >= 2
    assert TASK_RETRIES["retry_exponential_backoff"] == 2.0
    assert TASK_RETRIES["retry_delay"] == timedelta(seconds=15)
    assert TASK_RETRIES["max_retry_delay"] == timedelta(minutes=5)
    assert TASK_RETRIES["retry_policy"] is RETRY_POLICY


def test_the_policy_survives_serialization_and_copying() -> None:
    import copy

    assert MigrationRetryPolicy.deserialize(RETRY_POLICY.serialize()).serialize() == RETRY_POLICY.serialize()
    assert isinstance(copy.deepcopy(RETRY_POLICY), MigrationRetryPolicy)
