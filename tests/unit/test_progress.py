"""The progress record's rules: it only moves forward, a step behind it changes nothing, a rollback holds
back every forward step of its run, and a new run starts over after an earlier run's rollback."""

from __future__ import annotations

import pytest

from cilium_migration.progress import IN_PLACE_PHASES, NODE_POOL_PHASES, PHASES, ROLLBACK, Progress, phase_of

NODE_POOL_ORDER = [p for p in PHASES if p not in IN_PLACE_PHASES]
IN_PLACE_ORDER = [p for p in PHASES if p not in NODE_POOL_PHASES]


def test_a_tasks_phase_is_its_task_group() -> None:
    assert phase_of("cilium_nodes.install_cilium") == "cilium_nodes"
    assert phase_of("audit_report") == "audit_report"


def test_no_record_holds_nothing_back_and_any_phase_moves_it() -> None:
    empty = Progress()
    assert all(empty.why_not(p, "run-1") is None for p in PHASES)
    assert all(empty.moves_to(p, "run-1") for p in PHASES)


@pytest.mark.parametrize(("earlier", "last"), [
    *((p, "decommission") for p in NODE_POOL_ORDER[:-1]), *((p, "remove_old_cni") for p in IN_PLACE_ORDER[:-1])])
def test_a_step_behind_the_recorded_phase_is_held_back_and_says_why(earlier: str, last: str) -> None:
    """In each strategy's own order (the in-place DAG's phases sit between the node-pool one's)."""
    record = Progress(last, "run-1")
    reason = record.why_not(earlier, "run-1")
    assert reason is not None and last in reason and "roll back" in reason
    assert record.why_not(earlier, "run-2") is not None, "another run (a resumed one) may not go back either"
    assert not record.moves_to(earlier, "run-1"), "the record never moves back"


def test_a_step_of_the_recorded_phase_or_a_later_one_may_act() -> None:
    record = Progress("cilium_nodes", "run-1")
    assert record.why_not("cilium_nodes", "run-1") is None, "a retry within the phase acts"
    assert record.why_not("cutover", "run-1") is None
    assert record.moves_to("cutover", "run-1") and not record.moves_to("cilium_nodes", "run-1")


def test_after_a_rollback_this_runs_forward_steps_change_nothing_and_a_new_run_starts_over() -> None:
    record = Progress(ROLLBACK, "run-1")
    assert all(record.why_not(p, "run-1") is not None for p in PHASES)
    assert all(record.why_not(p, "run-2") is None for p in PHASES)
    assert record.moves_to("preflight", "run-2")
    assert not record.moves_to(ROLLBACK, "run-1"), "recording the rollback twice changes nothing"
    assert record.moves_to(ROLLBACK, "run-2")


def test_rollback_steps_are_never_held_back() -> None:
    assert Progress("decommission", "run-1").why_not("rollback", "run-1") is None


@pytest.mark.parametrize(("recorded", "in_place"), [("cutover", True), ("restart_pods", False)])
def test_a_migration_of_the_other_strategy_under_way_is_named(recorded: str, in_place: bool) -> None:
    reason = Progress(recorded, "run-1").other_strategy(in_place)
    assert reason is not None and recorded in reason and "run-1" in reason


@pytest.mark.parametrize("recorded", [None, "preflight", "baseline", ROLLBACK])
def test_a_record_both_strategies_share_blocks_neither(recorded: str | None) -> None:
    assert Progress(recorded, "run-1").other_strategy(True) is None
    assert Progress(recorded, "run-1").other_strategy(False) is None
