"""The in-place node roll decides each step from the cluster alone: surge by one, replace the snapshot's
nodes one at a time once the group is Ready at its size, wait while a terminated node is still there,
settle back to the snapshot's size, then nothing more (a retry goes on where the last try stopped)."""

from __future__ import annotations

from typing import Any

import pytest

from cilium_migration.errors import PermanentError
from cilium_migration.node_roll import (
    DONE,
    REPLACE,
    SETTLE,
    SURGE,
    TERMINATED_ANNOTATION,
    WAIT,
    instance_id,
    next_action,
)

SNAPSHOT = {"minSize": 3, "maxSize": 3, "desiredSize": 3}
OLD = ["old-a", "old-b", "old-c"]


def node(name: str, *, ready: bool = True, terminated: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    spec: dict[str, Any] = {"providerID": f"aws:///us-west-1a/i-{abs(hash(name)) % 10**12:012x}"}
    if terminated:
        meta["annotations"] = {TERMINATED_ANNOTATION: spec["providerID"].rsplit("/", 1)[-1]}
        spec["unschedulable"] = True
    return {"metadata": meta, "spec": spec,
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def scaling(desired: int, maximum: int | None = None) -> dict[str, int]:
    return {"minSize": 3, "maxSize": maximum if maximum is not None else max(desired, 3), "desiredSize": desired}


def test_the_first_step_surges_the_group_by_one() -> None:
    action = next_action("ng-1", scaling(3), SNAPSHOT, [node(n) for n in OLD], OLD)
    assert (action.kind, action.size) == (SURGE, 4)


def test_after_the_surge_it_waits_for_the_extra_node_to_be_ready() -> None:
    action = next_action("ng-1", scaling(4), SNAPSHOT, [*(node(n) for n in OLD), node("new-1", ready=False)], OLD)
    assert action.kind == WAIT and action.check == "nodes_replaced"
    assert action.arguments == {"nodegroups": ["ng-1"], "count": 4, "gone": []}


def test_with_every_node_ready_it_replaces_the_first_snapshot_node() -> None:
    action = next_action("ng-1", scaling(4), SNAPSHOT, [*(node(n) for n in OLD), node("new-1")], OLD)
    assert (action.kind, action.node) == (REPLACE, "old-a")


def test_a_terminated_node_still_registered_is_waited_for_not_replaced_again() -> None:
    nodes = [node("old-a", terminated=True), node("old-b"), node("old-c"), node("new-1")]
    action = next_action("ng-1", scaling(4), SNAPSHOT, nodes, OLD)
    assert action.kind == WAIT and action.arguments["gone"] == ["old-a"]


def test_once_the_replacement_is_ready_the_next_snapshot_node_goes() -> None:
    nodes = [node("old-b"), node("old-c"), node("new-1"), node("new-2")]
    assert next_action("ng-1", scaling(4), SNAPSHOT, nodes, OLD).node == "old-b"


def test_with_no_snapshot_node_left_the_group_settles_back_to_the_snapshot() -> None:
    nodes = [node(f"new-{i}") for i in range(4)]
    action = next_action("ng-1", scaling(4), SNAPSHOT, nodes, OLD)
    assert (action.kind, action.size) == (SETTLE, 3)


def test_after_settling_it_waits_for_the_surplus_node_then_is_done() -> None:
    settling = next_action("ng-1", scaling(3), SNAPSHOT, [node(f"new-{i}") for i in range(4)], OLD)
    assert settling.kind == WAIT and settling.arguments["count"] == 3
    done = next_action("ng-1", scaling(3), SNAPSHOT, [node(f"new-{i}") for i in range(3)], OLD)
    assert done.kind == DONE


def test_a_group_empty_at_the_snapshot_has_nothing_to_roll() -> None:
    empty = {"minSize": 0, "maxSize": 2, "desiredSize": 0}
    assert next_action("ng-2", {**empty}, empty, [], []).kind == DONE


def test_a_raised_max_is_put_back_too() -> None:
    action = next_action("ng-1", scaling(3, maximum=4), SNAPSHOT, [node(f"new-{i}") for i in range(3)], OLD)
    assert action.kind == SETTLE


def test_instance_id_comes_from_the_provider_id_and_a_node_without_one_is_refused() -> None:
    assert instance_id({"metadata": {"name": "n"}, "spec": {"providerID": "aws:///us-west-1a/i-0abc"}}) == "i-0abc"
    with pytest.raises(PermanentError, match="no EC2 providerID"):
        instance_id({"metadata": {"name": "n"}, "spec": {}})
