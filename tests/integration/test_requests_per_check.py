"""Every check, the workload move's listing of the pods to evict and the in-place restarts' plan make as many API requests at 10
nodes as at 40: it lists once (label and field selectors) and filters in memory, never a request per
node. Counted in the client (``bench.requests_per_check``: a wrapper around the Kubernetes client's
requests and a hook on the EKS client), against twins of both sizes built the same way. Continuation
pages of a list are counted apart: both sizes fit in one page of 500."""

from __future__ import annotations

import pytest

from bench.requests_per_check import MOVE, RESTART_PLAN, Count, built_twin, count_all
from cilium_migration import checks

SIZES = (10, 40)


@pytest.fixture(scope="module")
def counts() -> dict[int, dict[str, Count]]:
    out = {}
    for size in SIZES:
        with built_twin(size) as twin:
            out[size] = count_all(twin)
    return out


def test_every_check_is_counted(counts: dict[int, dict[str, Count]]) -> None:
    assert set(counts[SIZES[0]]) == {*checks.CHECKS, MOVE, RESTART_PLAN}


@pytest.mark.parametrize("name", [*sorted(checks.CHECKS), MOVE, RESTART_PLAN])
def test_requests_do_not_grow_with_the_nodes(counts: dict[int, dict[str, Count]], name: str) -> None:
    small, large = (counts[size][name] for size in SIZES)
    assert small == large, f"{name}: {small} requests at {SIZES[0]} nodes, {large} at {SIZES[1]}"
    assert small.calls <= 6, f"{name}: {small} requests"
