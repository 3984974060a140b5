"""Retries at the client, without a server: the rules of ``BudgetRetry`` and the EKS client's config.

Covers: which methods and statuses retry (POST only when the server did nothing; an eviction's 429
never: it is a PodDisruptionBudget's answer); full jitter stays in its bounds; waits honour Retry-After
but never pass the budget; the budget ends the retries; the budget comes from the environment; the
EKS config uses botocore's standard mode with 10 attempts, under the connection's own config_kwargs.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.config import Config
from urllib3.exceptions import MaxRetryError

from cilium_migration.retrying import (
    BUDGET_ENV,
    DEFAULT_BUDGET_S,
    BudgetRetry,
    RetrySettings,
    botocore_config,
    full_jitter,
    is_eviction,
)

NODES = "/api/v1/nodes"
EVICTION = "/api/v1/namespaces/default/pods/web-1/eviction"


class Answer:
    """Just enough of a urllib3 response for ``Retry``."""

    def __init__(self, status: int, retry_after: str | None = None) -> None:
        self.status = status
        self.headers = {"Retry-After": retry_after} if retry_after else {}

    def get_redirect_location(self) -> bool:
        return False


@pytest.mark.parametrize(("method", "status", "retried"), [
    pytest.param("GET", 503, True, id="get-503"),
    pytest.param("GET", 500, True, id="get-500"),
    pytest.param("GET", 502, True, id="get-502"),
    pytest.param("GET", 504, True, id="get-504"),
    pytest.param("GET", 429, True, id="get-429"),
    pytest.param("PATCH", 500, True, id="patch-500"),
    pytest.param("PUT", 504, True, id="put-504"),
    pytest.param("DELETE", 503, True, id="delete-503"),
    pytest.param("POST", 503, True, id="post-503-nothing-done"),
    pytest.param("POST", 429, True, id="post-429-nothing-done"),
    pytest.param("POST", 500, False, id="post-500-may-have-been-done"),
    pytest.param("POST", 504, False, id="post-504-may-have-been-done"),
    pytest.param("GET", 403, False, id="get-403-permanent"),
    pytest.param("GET", 404, False, id="get-404"),
    pytest.param("PATCH", 409, False, id="patch-409-conflict"),
])
def test_which_answers_are_retried(method: str, status: int, retried: bool) -> None:
    assert BudgetRetry().is_retry(method, status) is retried


def test_an_evictions_429_reaches_the_caller_at_once() -> None:
    retry = BudgetRetry()
    assert is_eviction(EVICTION) and is_eviction(EVICTION + "?dryRun=All") and not is_eviction(NODES)
    with pytest.raises(MaxRetryError):  # with raise_on_status=False urllib3 returns this answer as it is
        retry.increment("POST", EVICTION, response=Answer(429))  # type: ignore[arg-type]
    assert retry.increment("POST", EVICTION, response=Answer(503)).history  # type: ignore[arg-type]


def test_the_last_answer_is_returned_not_raised() -> None:
    assert BudgetRetry().raise_on_status is False


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 12])
def test_full_jitter_stays_within_its_bounds(attempt: int) -> None:
    ceiling = min(10.0, 0.5 * 2 ** (attempt - 1))
    waits = [full_jitter(attempt, 0.5, 10.0) for _ in range(200)]
    assert all(0.0 <= w <= ceiling for w in waits)
    assert max(waits) > ceiling / 2, "the whole range is used"


def test_the_budget_starts_at_the_first_failure_and_ends_the_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    retry = BudgetRetry(budget_s=60)
    assert retry.deadline is None and retry.remaining() == 60
    retry = retry.increment("GET", NODES, response=Answer(503))  # type: ignore[arg-type]
    assert retry.deadline == 1060.0
    now[0] = 1059.0
    retry = retry.increment("GET", NODES, response=Answer(503))  # type: ignore[arg-type]
    assert retry.deadline == 1060.0 and len(retry.history) == 2
    now[0] = 1060.0
    with pytest.raises(MaxRetryError):
        retry.increment("GET", NODES, response=Answer(503))  # type: ignore[arg-type]


def test_waits_honour_retry_after_but_never_pass_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    retry = BudgetRetry(budget_s=5).increment("GET", NODES, response=Answer(429, "2"))  # type: ignore[arg-type]
    retry.sleep(Answer(429, "2"))  # type: ignore[arg-type]
    retry.sleep(Answer(503, "30"))  # type: ignore[arg-type]
    assert slept[0] == 2 and 4.9 < slept[1] <= 5


def test_without_retry_after_the_wait_is_jittered_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    retry = BudgetRetry(budget_s=60, backoff_factor=1.0, backoff_max=4.0)
    for _ in range(5):
        retry = retry.increment("GET", NODES, response=Answer(503))  # type: ignore[arg-type]
        retry.sleep(Answer(503))  # type: ignore[arg-type]
    ceilings = [1, 2, 4, 4, 4]
    assert all(0 <= s <= c for s, c in zip(slept, ceilings, strict=False))


def test_the_budget_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert RetrySettings.from_env().budget_s == DEFAULT_BUDGET_S
    monkeypatch.setenv(BUDGET_ENV, "3.5")
    assert RetrySettings.from_env().budget_s == 3.5


def test_eks_uses_the_standard_mode_with_ten_attempts() -> None:
    config = botocore_config(RetrySettings())
    assert config.retries == {"mode": "standard", "max_attempts": 10}


def test_the_connections_own_config_kwargs_win() -> None:
    theirs: Any = Config(connect_timeout=7, retries={"mode": "adaptive", "max_attempts": 4})
    merged = botocore_config(RetrySettings(), theirs)
    assert merged.connect_timeout == 7 and merged.retries == {"mode": "adaptive", "max_attempts": 4}
    assert botocore_config(RetrySettings(), Config(connect_timeout=7)).retries == {"mode": "standard",
                                                                                    "max_attempts": 10}
