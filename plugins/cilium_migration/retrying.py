"""Retries at the client: an API fault costs time, never the request.

Rules for the Kubernetes client (urllib3's ``Retry`` under the official client, ``BudgetRetry``):
- GET, HEAD, OPTIONS, PUT, PATCH and DELETE are retried on 429, 500, 502, 503 and 504, on connection
  errors and on read errors (timeouts, dropped connections): repeating them is safe for our use.
- POST (create, eviction) is retried only when the server did nothing: a connection that never opened,
  503, or 429. An eviction's 429 is never retried here: it is how a PodDisruptionBudget refuses, and
  ``workloads.evict`` waits that out itself, with the budget's message intact.
- Each wait honours ``Retry-After`` when the server sends one, else is exponential backoff with full
  jitter: uniform in ``[0, min(backoff_max, backoff_base * 2**(n-1))]`` before the n-th retry.
- A request's retries stop once ``budget_s`` has passed since its first failure; every wait is cut to
  what is left of it. The last answer then reaches the caller as it would without retries
  (``ApiException`` with the server's status and message; urllib3's ``MaxRetryError`` for connections).

Rules for EKS (boto3): botocore's ``standard`` retry mode (throttling, 5xx, connection errors, with its
own exponential backoff and jitter), ``max_attempts`` 10. A connection's ``config_kwargs`` extra wins
over these settings where it sets the same option.

The settings come from ``RetrySettings``; ``CILIUM_MIGRATION_API_RETRY_BUDGET_S`` sets the default budget
(tests shorten it).
"""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

if TYPE_CHECKING:
    from typing import Self

    from botocore.config import Config
    from urllib3.connectionpool import ConnectionPool
    from urllib3.response import BaseHTTPResponse

BUDGET_ENV = "CILIUM_MIGRATION_API_RETRY_BUDGET_S"
DEFAULT_BUDGET_S = 90.0
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
POST_RETRY_STATUSES = frozenset({429, 503})  # the server refused before doing anything
_EVICTION = re.compile(r"/pods/[^/]+/eviction/?(\?|$)")


@dataclass(frozen=True)
class RetrySettings:
    """How long and how hard the clients retry."""

    budget_s: float = DEFAULT_BUDGET_S  # per request, from its first failure
    backoff_base_s: float = 0.5
    backoff_max_s: float = 10.0
    eks_mode: str = "standard"
    eks_max_attempts: int = 10

    @classmethod
    def from_env(cls) -> RetrySettings:
        """Defaults, with the budget from ``CILIUM_MIGRATION_API_RETRY_BUDGET_S`` when set."""
        raw = os.environ.get(BUDGET_ENV, "").strip()
        return cls(budget_s=float(raw)) if raw else cls()


def full_jitter(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): uniform in [0, min(cap, base * 2**(attempt-1))]."""
    if attempt < 1:
        return 0.0
    return random.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))


def is_eviction(url: str | None) -> bool:
    """Whether the request is a pod eviction (``POST .../pods/{name}/eviction``)."""
    return bool(url) and _EVICTION.search(url or "") is not None


class BudgetRetry(Retry):
    """urllib3 ``Retry`` with the module's rules: per-method statuses, full jitter, a time budget."""

    def __init__(self, *, budget_s: float = DEFAULT_BUDGET_S, deadline: float | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("total", None)
        kwargs.setdefault("redirect", 5)
        kwargs.setdefault("other", 0)  # TLS and other errors: retrying cannot help
        kwargs.setdefault("allowed_methods", IDEMPOTENT_METHODS)  # read errors: only where repeating is safe
        kwargs.setdefault("status_forcelist", RETRY_STATUSES)
        kwargs.setdefault("raise_on_status", False)  # the last answer reaches the caller as an ApiException
        kwargs.setdefault("backoff_factor", 0.5)
        kwargs.setdefault("backoff_max", 10.0)
        super().__init__(**kwargs)
        self.budget_s = budget_s
        self.deadline = deadline  # monotonic; set at the first failure

    @classmethod
    def from_settings(cls, settings: RetrySettings) -> BudgetRetry:
        return cls(budget_s=settings.budget_s, backoff_factor=settings.backoff_base_s,
                   backoff_max=settings.backoff_max_s)

    def new(self, **kw: Any) -> Self:
        kw.setdefault("budget_s", self.budget_s)
        kw.setdefault("deadline", self.deadline)
        return super().new(**kw)

    def remaining(self) -> float:
        """Seconds left of the budget (the whole budget before the first failure)."""
        return self.budget_s if self.deadline is None else self.deadline - time.monotonic()

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        statuses = RETRY_STATUSES if method.upper() in IDEMPOTENT_METHODS else POST_RETRY_STATUSES
        return status_code in statuses

    def is_exhausted(self) -> bool:
        return super().is_exhausted() or (self.deadline is not None and time.monotonic() >= self.deadline)

    def increment(self, method: str | None = None, url: str | None = None,
                  response: BaseHTTPResponse | None = None, error: Exception | None = None,
                  _pool: ConnectionPool | None = None, _stacktrace: Any = None) -> Self:
        if response is not None and response.status == 429 and is_eviction(url):
            # a PodDisruptionBudget's refusal: hand it to the caller at once (raise_on_status=False)
            raise MaxRetryError(_pool, url or "", ResponseError("eviction refused (429)"))  # type: ignore[arg-type]
        started = self if self.deadline is not None else self.new(deadline=time.monotonic() + self.budget_s)
        return Retry.increment(started, method, url, response, error, _pool, _stacktrace)  # type: ignore[return-value]

    def get_backoff_time(self) -> float:
        return full_jitter(len(self.history), self.backoff_factor, self.backoff_max)

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        """Wait as ``Retry-After`` says, else the jittered backoff; never past the budget."""
        retry_after = self.get_retry_after(response) if response is not None else None
        wait = retry_after if retry_after is not None and self.respect_retry_after_header \
            else self.get_backoff_time()
        wait = min(wait, max(0.0, self.remaining()))
        if wait > 0:
            time.sleep(wait)


def install(api_client: Any, settings: RetrySettings) -> Any:
    """Give a ``kubernetes.client.ApiClient`` the module's retries, rebuilding its pool manager the way
    the client builds it (its configuration's ``retries``). Returns the same client."""
    from kubernetes.client import rest

    api_client.configuration.retries = BudgetRetry.from_settings(settings)
    old = api_client.rest_client
    api_client.rest_client = rest.RESTClientObject(api_client.configuration)
    old.pool_manager.clear()
    return api_client


def botocore_config(settings: RetrySettings, connection_config: Config | None = None) -> Config:
    """The EKS client's botocore ``Config``: the retry mode and attempts, merged under the connection's
    own ``config_kwargs`` (those win)."""
    from botocore.config import Config

    ours = Config(retries={"mode": settings.eks_mode, "max_attempts": settings.eks_max_attempts})
    return ours.merge(connection_config) if connection_config is not None else ours
