"""Task retries: temporary trouble costs time, a permanent error fails at once.

Rules (Airflow 3.3's ``retry_policy``, evaluated in the worker with the exception itself):
- ``PermanentError``, and API errors that ``errors.classify`` calls permanent (a 403, an invalid
  request, a missing EKS resource), fail the task without burning its retries. ``AirflowFailException``
  never reaches the policy: Airflow fails it at once.
- ``TemporaryError`` and temporary API errors (429, 5xx, EKS throttling or update in progress,
  connection errors) retry, after the task's exponential backoff.
- Anything else gets the task's ordinary retries.

``TASK_RETRIES`` is what every task of the DAG gets (``default_args``): 3 retries after 15 s, 30 s and
60 s at least (the delay doubles; Airflow adds up to as much again, deterministically per try), never
more than 5 minutes apart. Short API faults are absorbed by the clients' own retries
(``cilium_migration.retrying``); these are for trouble that outlasts them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy

from cilium_migration.errors import Kind, classify, error_message


class MigrationRetryPolicy(RetryPolicy):
    """FAIL what retrying cannot fix, RETRY what it can, DEFAULT otherwise (see the module's rules)."""

    def evaluate(self, exception: BaseException, try_number: int, max_tries: int,
                 context: Any = None) -> RetryDecision:
        kind = classify(exception)
        if kind is Kind.PERMANENT:
            return RetryDecision.fail(f"permanent: {error_message(exception)}")
        if kind is Kind.TEMPORARY:
            return RetryDecision.retry(reason=f"temporary: {error_message(exception)}")
        return RetryDecision.default()

    def serialize(self) -> dict[str, Any]:
        return {"__type": "MigrationRetryPolicy"}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> MigrationRetryPolicy:
        return cls()


RETRY_POLICY = MigrationRetryPolicy()

TASK_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay": timedelta(seconds=15),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=5),
    "retry_policy": RETRY_POLICY,
}
