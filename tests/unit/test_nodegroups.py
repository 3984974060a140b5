"""Node group scaling config: desired size set, min/max widened only as far as needed."""

from __future__ import annotations

import pytest

from cilium_migration.nodegroups import scaling_for


@pytest.mark.parametrize(("current", "size", "expected"), [
    pytest.param({"minSize": 0, "maxSize": 1, "desiredSize": 0}, 3, {"minSize": 0, "maxSize": 3, "desiredSize": 3},
                 id="runbook-scale-up-raises-max"),
    pytest.param({"minSize": 3, "maxSize": 3, "desiredSize": 3}, 0, {"minSize": 0, "maxSize": 3, "desiredSize": 0},
                 id="scale-old-to-zero-lowers-min"),
    pytest.param({"minSize": 1, "maxSize": 10, "desiredSize": 2}, 5, {"minSize": 1, "maxSize": 10, "desiredSize": 5},
                 id="within-bounds"),
])
def test_scaling_for(current: dict, size: int, expected: dict) -> None:
    assert scaling_for({"scalingConfig": current}, size) == expected
