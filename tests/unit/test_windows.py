"""Maintenance windows: the window arithmetic (time zones, daylight saving), the batch-fit rule, the params'
validation, and how the disruptive steps and the workload move wait (a deferral to the next window)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cilium_migration import windows
from cilium_migration.errors import PermanentError
from cilium_migration.spec import MigrationSpec
from cilium_migration.windows import Window

SUNDAY_2AM = Window("0 2 * * SUN", 120, "UTC")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---- the arithmetic ------------------------------------------------------------------------------

@pytest.mark.parametrize(("now", "open_"), [
    pytest.param(utc(2026, 12, 6, 1, 59, 59), False, id="just-before"),
    pytest.param(utc(2026, 12, 6, 2, 0), True, id="at-the-start"),
    pytest.param(utc(2026, 12, 6, 3, 59, 59), True, id="just-before-the-end"),
    pytest.param(utc(2026, 12, 6, 4, 0), False, id="at-the-end"),
    pytest.param(utc(2026, 12, 3, 16, 0), False, id="midweek"),
])
def test_inside_a_window_from_its_start_until_its_length_has_passed(now: datetime, open_: bool) -> None:
    assert SUNDAY_2AM.is_open(now) is open_


def test_current_window_end_and_next_start() -> None:
    assert SUNDAY_2AM.closes_at(utc(2026, 12, 6, 3, 0)) == utc(2026, 12, 6, 4, 0)
    assert SUNDAY_2AM.closes_at(utc(2026, 12, 6, 5, 0)) is None
    assert SUNDAY_2AM.next_start(utc(2026, 12, 3, 16, 0)) == utc(2026, 12, 6, 2, 0)
    assert SUNDAY_2AM.next_start(utc(2026, 12, 6, 2, 0)) == utc(2026, 12, 13, 2, 0)  # strictly after
    assert SUNDAY_2AM.last_start(utc(2026, 12, 6, 2, 0)) == utc(2026, 12, 6, 2, 0)


def test_the_cron_is_wall_clock_time_in_its_zone() -> None:
    new_york = Window("0 2 * * *", 60, "America/New_York")
    assert new_york.next_start(utc(2026, 12, 3, 0, 0)) == utc(2026, 12, 3, 7, 0)  # EST, UTC-5
    assert new_york.next_start(utc(2026, 7, 3, 0, 0)) == utc(2026, 7, 3, 6, 0)  # EDT, UTC-4
    assert new_york.is_open(utc(2026, 12, 3, 7, 30)) and not new_york.is_open(utc(2026, 12, 3, 2, 30))


def test_a_start_in_the_spring_forward_gap_opens_after_the_jump() -> None:
    paris = Window("30 2 * * *", 60, "Europe/Paris")  # 2026-03-29: 02:00 CET -> 03:00 CEST, 02:30 never happens
    start = paris.next_start(utc(2026, 3, 28, 22, 0))
    assert start == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert paris.local(start) == "2026-03-29 03:30 CEST (Europe/Paris)"
    assert paris.next_start(start) == utc(2026, 3, 30, 0, 30)  # then 02:30 CEST again


def test_a_start_that_happens_twice_opens_at_the_first_and_the_length_is_elapsed_time() -> None:
    paris = Window("30 2 * * *", 120, "Europe/Paris")  # 2026-10-25: 03:00 CEST -> 02:00 CET, 02:30 twice
    start = paris.next_start(utc(2026, 10, 24, 22, 0))
    assert start == utc(2026, 10, 25, 0, 30)  # the first 02:30 (CEST)
    assert paris.closes_at(start) == utc(2026, 10, 25, 2, 30)  # two hours later: 03:30 CET
    assert paris.next_start(start) == utc(2026, 10, 26, 1, 30)  # 02:30 CET the next day


def test_overlapping_windows_keep_the_window_open() -> None:
    hourly = Window("0 * * * *", 90, "UTC")
    assert all(hourly.is_open(utc(2026, 12, 3, 10, m)) for m in range(0, 60, 7))
    assert hourly.closes_at(utc(2026, 12, 3, 10, 20)) == utc(2026, 12, 3, 11, 30)


# ---- does the next batch fit? --------------------------------------------------------------------

def test_a_batch_starts_only_when_its_estimate_ends_before_the_window_closes() -> None:
    ten_left = utc(2026, 12, 6, 3, 50)
    assert SUNDAY_2AM.fits(ten_left, None)  # no batch yet: inside is enough
    assert SUNDAY_2AM.fits(ten_left, 599)
    assert not SUNDAY_2AM.fits(ten_left, 601)  # too short: wait for the following window
    assert not SUNDAY_2AM.fits(utc(2026, 12, 6, 5, 0), None)  # outside


def test_a_batch_longer_than_any_window_starts_only_early_in_a_window() -> None:
    estimate = 3 * 3600.0  # longer than the whole 2-hour window: it could never fit
    assert SUNDAY_2AM.fits(utc(2026, 12, 6, 2, 1), estimate)
    assert not SUNDAY_2AM.fits(utc(2026, 12, 6, 3, 30), estimate)


def test_describe_says_whether_the_window_is_open_and_until_when() -> None:
    paris = Window("0 2 * * SUN", 120, "Europe/Paris")
    assert paris.describe(utc(2026, 12, 3, 16, 0)) == ("maintenance window `0 2 * * SUN` for 120 min (Europe/Paris): "
                                                      "closed now, next opens at 2026-12-06 02:00 CET (Europe/Paris)")
    assert paris.describe(utc(2026, 12, 6, 1, 30)).endswith("open now, closes at 2026-12-06 04:00 CET (Europe/Paris)")


# ---- validation ----------------------------------------------------------------------------------

def test_no_cron_is_no_window() -> None:
    assert windows.from_params({}) is None
    assert windows.from_params({"window_cron": "  ", "window_minutes": 0}) is None


@pytest.mark.parametrize(("params", "message"), [
    pytest.param({"window_cron": "every sunday", "window_minutes": 60}, "window_cron: 'every sunday' is not a cron",
                 id="not-cron"),
    pytest.param({"window_cron": "0 2 * * * *", "window_minutes": 60}, "five fields", id="six-fields"),
    pytest.param({"window_cron": "0 0 31 2 *", "window_minutes": 60}, "never matches", id="never-matches"),
    pytest.param({"window_cron": 5, "window_minutes": 60}, "window_cron: must be", id="not-a-string"),
    pytest.param({"window_cron": "0 2 * * SUN", "window_minutes": 0}, "window_minutes", id="zero-minutes"),
    pytest.param({"window_cron": "0 2 * * SUN", "window_minutes": -1}, "window_minutes", id="negative"),
    pytest.param({"window_cron": "0 2 * * SUN", "window_minutes": 1.5}, "window_minutes", id="fraction"),
    pytest.param({"window_cron": "0 2 * * SUN", "window_minutes": 10081}, "from 1 to 10080", id="over-a-week"),
    pytest.param({"window_cron": "0 2 * * SUN", "window_minutes": 60, "window_timezone": "Europe/Pariss"},
                 "window_timezone: 'Europe/Pariss' is not an IANA time zone", id="unknown-zone"),
    pytest.param({"window_cron": "0 2 * * SUN", "window_minutes": 60, "window_timezone": "../etc/passwd"},
                 "window_timezone", id="path-as-zone"),
])
def test_bad_window_params_are_permanent_errors_naming_the_field(params: dict[str, Any], message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        windows.from_params(params)


def test_preflight_refuses_a_bad_window_before_anything_changes() -> None:
    """Every task validates the params first (``spec_from``): preflight fails at once, naming the field."""
    from airflow.sdk.exceptions import AirflowFailException

    from cilium_migration.sensors import spec_from

    params = {"cluster_name": "c", "region": "us-west-1", "window_cron": "0 2 * * SUN", "window_minutes": 60,
              "window_timezone": "Nowhere/Land"}
    with pytest.raises(AirflowFailException, match="window_timezone"):
        spec_from({"params": params})


# ---- the operators wait ----------------------------------------------------------------------------

class FakeTI:
    try_number = 1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcom.get(key)


def spec_with(window: Window, **params: Any) -> MigrationSpec:
    return MigrationSpec.from_params({"cluster_name": "c", "region": "us-west-1", **window.to_params(), **params})


def test_a_disruptive_step_outside_its_window_defers_to_the_next_start_and_says_so() -> None:
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger
    from airflow.sdk.exceptions import TaskDeferred

    from cilium_migration.operators import WINDOW_XCOM_KEY, NodeCordonOperator, defer_outside_window

    op = NodeCordonOperator(task_id="cordon_old_nodes", role="old")
    assert op.disruptive and not NodeCordonOperator(task_id="u", role="old", cordon=False).disruptive
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as deferred:
        defer_outside_window(op, {"ti": ti}, spec_with(SUNDAY_2AM), method_name="execute_in_window",
                             now=utc(2026, 12, 3, 16, 0))
    trigger = deferred.value.trigger
    assert isinstance(trigger, DateTimeTrigger) and trigger.moment == utc(2026, 12, 6, 2, 0)
    assert deferred.value.method_name == "execute_in_window"
    assert ti.xcom[WINDOW_XCOM_KEY].startswith("outside the maintenance window")
    assert ti.xcom[WINDOW_XCOM_KEY].endswith("waiting for the next window at 2026-12-06 02:00 UTC (UTC)")
    # inside: no deferral; a dry run never waits
    defer_outside_window(op, {"ti": ti}, spec_with(SUNDAY_2AM), method_name="m", now=utc(2026, 12, 6, 2, 30))
    defer_outside_window(op, {"ti": ti}, spec_with(SUNDAY_2AM, dry_run=True), method_name="m",
                         now=utc(2026, 12, 3, 16, 0))


def test_which_steps_are_disruptive() -> None:
    from cilium_migration.operators import (
        AwsNodeDeleteOperator,
        EksNodegroupScaleOperator,
        NodeLabelOperator,
        WorkloadMoveOperator,
    )

    assert AwsNodeDeleteOperator(task_id="d").disruptive and WorkloadMoveOperator(task_id="m").disruptive
    assert EksNodegroupScaleOperator(task_id="z", role="old", size="zero").disruptive
    assert not EksNodegroupScaleOperator(task_id="t", role="new", size="target").disruptive
    assert not EksNodegroupScaleOperator(task_id="s", role="old", size="snapshot").disruptive
    assert not NodeLabelOperator(task_id="l").disruptive


def test_a_window_too_short_for_the_next_batch_waits_for_the_following_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The move has done a 10-minute batch; the window closes in about 2 minutes: the next batch is not
    started, the task defers to the next window's start, carrying the batches' durations."""
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger
    from airflow.sdk.exceptions import TaskDeferred

    from cilium_migration import operators, workloads

    now = datetime.now(UTC)
    opened = now - timedelta(minutes=10)
    window = Window(f"{opened.minute} {opened.hour} * * *", 12, "UTC")  # daily, closes in about 2 minutes
    evicted: list[Any] = []
    monkeypatch.setattr(workloads, "movable", lambda core, names, force=False: [{"metadata": {"name": "web-1"}}])
    monkeypatch.setattr(workloads, "evict_batch", lambda *a, **k: evicted.append(a) or ([], None))
    op = operators.WorkloadMoveOperator(task_id="move_workloads", role="old")
    monkeypatch.setattr(op, "_node_names", lambda spec: ["old-1"])
    op.__dict__["clients"] = type("NoClients", (), {"core": None})()  # the pods come from ``movable``
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as deferred:
        op._batches({"ti": ti, "run_id": "r"}, spec_with(window), durations=[600.0], number=1)
    assert evicted == []
    trigger = deferred.value.trigger
    assert isinstance(trigger, DateTimeTrigger)
    assert trigger.moment == window.next_start(now) and trigger.moment - now > timedelta(hours=23)
    assert deferred.value.method_name == "resume_batches"
    assert deferred.value.kwargs == {"durations": [600.0], "number": 1}
    assert "would not finish before the window closes" in ti.xcom[operators.WINDOW_XCOM_KEY]
    # with no batch done yet (no estimate) the same moment is inside the window: the batch starts
    class Started(Exception):
        pass

    def evict_batch(*args: Any, **kwargs: Any) -> Any:
        raise Started

    monkeypatch.setattr(workloads, "evict_batch", evict_batch)
    with pytest.raises(Started):
        op._batches({"ti": ti, "run_id": "r"}, spec_with(window), durations=[], number=0)


def test_a_batch_whose_replacements_never_came_is_retried_and_a_terminal_one_fails() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from cilium_migration.errors import TemporaryError
    from cilium_migration.operators import WorkloadMoveOperator

    op = WorkloadMoveOperator(task_id="move_workloads", role="old")
    context = {"ti": FakeTI(), "run_id": "r", "params": {"cluster_name": "c", "region": "us-west-1"}}
    with pytest.raises(TemporaryError, match="batch 2: no replacement Ready"):
        op.batch_replaced(context, {"status": "timeout", "message": "m"}, durations=[], number=2, started=0.0)
    with pytest.raises(AirflowFailException, match="batch 2: gone wrong"):
        op.batch_replaced(context, {"status": "failed", "message": "gone wrong"}, durations=[], number=2,
                          started=0.0)


def test_proceed_outside_the_window_is_recorded_and_the_gate_waits_for_the_window() -> None:
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger
    from airflow.sdk.exceptions import TaskDeferred

    from cilium_migration.approvals import PROCEED, ROLL_BACK
    from cilium_migration.operators import MigrationApprovalOperator

    later = datetime.now(UTC) + timedelta(hours=2)
    window = Window(f"{later.minute} {later.hour} * * *", 60, "UTC")  # closed now, opens in two hours
    gate = MigrationApprovalOperator(task_id="approve", subject="s", options=[PROCEED, ROLL_BACK],
                                     defaults=[ROLL_BACK], evidence_title="t", mesh_task_id="m", changes=[],
                                     options_mapping={PROCEED: "cutover.cordon_old_nodes", ROLL_BACK: "rejected"})
    context = {"ti": FakeTI(), "params": {"cluster_name": "c", "region": "us-west-1", **window.to_params()}}
    answered = datetime.now(UTC)
    event = {"chosen_options": [PROCEED], "params_input": {}, "responded_at": answered,
             "responded_by_user": {"id": "ops", "name": "ops"}}
    with pytest.raises(TaskDeferred) as deferred:
        gate.execute_complete(context, event)
    assert isinstance(deferred.value.trigger, DateTimeTrigger)
    assert deferred.value.trigger.moment == window.next_start(answered)
    assert deferred.value.method_name == "proceed_in_window"
    kept = deferred.value.kwargs["answer"]
    assert kept["chosen_options"] == [PROCEED] and kept["responded_at"] == answered.isoformat()
    # woken while still outside (a trigger that fired early): it waits again
    with pytest.raises(TaskDeferred):
        gate.proceed_in_window(context, answer=kept)
