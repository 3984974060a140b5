"""MigrationSpec.from_params: defaults, and every bad value refused with a message naming the field."""

from __future__ import annotations

import pytest

from cilium_migration.errors import PermanentError
from cilium_migration.spec import REPO_ROOT, MigrationSpec, Timeouts, resolve_chart

BASE = {"cluster_name": "dc-migrate", "region": "us-west-1"}


def test_defaults_follow_the_runbook() -> None:
    spec = MigrationSpec.from_params(BASE)
    assert spec.old_nodegroups == ("ng-1",)
    assert spec.new_nodegroup == "ng-cilium"
    assert spec.new_node_count == 3
    assert spec.egress_masquerade_interface == "eth0"
    assert spec.dry_run is False and spec.dry_run_arg is None
    assert spec.timeouts == Timeouts()
    assert spec.window is None  # no window: disruptive steps run at any time


def test_a_window_is_read_from_its_three_params() -> None:
    spec = MigrationSpec.from_params({**BASE, "window_cron": " 0  2 * * SUN ", "window_minutes": 90,
                                      "window_timezone": "Europe/Paris"})
    assert spec.window is not None
    assert (spec.window.cron, spec.window.minutes, spec.window.timezone) == ("0 2 * * SUN", 90, "Europe/Paris")
    assert MigrationSpec.from_params({**BASE, "window_cron": "", "window_minutes": -1}).window is None


def test_none_values_take_defaults_and_unknown_airflow_keys_are_ignored() -> None:
    spec = MigrationSpec.from_params({**BASE, "cilium_version": None, "timeouts": None, "extra": 1})
    assert spec.cilium_version is None and spec.timeouts == Timeouts()


def test_dry_run_sends_dry_run_all() -> None:
    assert MigrationSpec.from_params({**BASE, "dry_run": True}).dry_run_arg == "All"


def test_timeouts_override_only_what_is_given() -> None:
    spec = MigrationSpec.from_params({**BASE, "timeouts": {"mesh": 5, "poll_interval": 0.5}})
    assert spec.timeouts.mesh == 5.0 and spec.timeouts.poll_interval == 0.5
    assert spec.timeouts.nodegroup == Timeouts().nodegroup


@pytest.mark.parametrize(("changes", "field"), [
    pytest.param({"cluster_name": ""}, "cluster_name", id="empty-cluster"),
    pytest.param({"region": "mars-1"}, "region", id="bad-region"),
    pytest.param({"old_nodegroups": []}, "old_nodegroups", id="no-old-groups"),
    pytest.param({"old_nodegroups": ["ng 1"]}, "old_nodegroups", id="bad-old-group-name"),
    pytest.param({"new_nodegroup": "ng-1"}, "new_nodegroup", id="new-group-is-old"),
    pytest.param({"new_node_count": 0}, "new_node_count", id="zero-nodes"),
    pytest.param({"new_node_count": True}, "new_node_count", id="bool-is-not-int"),
    pytest.param({"cilium_chart": " "}, "cilium_chart", id="blank-chart"),
    pytest.param({"cilium_values": [1]}, "cilium_values", id="values-not-object"),
    pytest.param({"egress_masquerade_interface": "eth0; rm"}, "egress_masquerade_interface", id="bad-iface"),
    pytest.param({"goldpinger_namespace": "Bad_NS"}, "goldpinger_namespace", id="bad-namespace"),
    pytest.param({"eviction_batch_size": 0}, "eviction_batch_size", id="zero-batch"),
    pytest.param({"force_evictions": "yes"}, "force_evictions", id="string-bool"),
    pytest.param({"timeouts": {"mesh": -1}}, "timeouts.mesh", id="negative-timeout"),
    pytest.param({"timeouts": {"forever": 1}}, "timeouts", id="unknown-timeout"),
    pytest.param({"aws_conn_id": ""}, "aws_conn_id", id="empty-conn"),
    pytest.param({"window_cron": "0 2 * *"}, "window_cron", id="cron-four-fields"),
    pytest.param({"window_cron": "61 2 * * *"}, "window_cron", id="cron-bad-minute"),
    pytest.param({"window_cron": "0 0 30 2 *"}, "window_cron", id="cron-never-matches"),
    pytest.param({"window_cron": "0 2 * * SUN", "window_minutes": 0}, "window_minutes", id="window-zero"),
    pytest.param({"window_cron": "0 2 * * SUN", "window_minutes": -30}, "window_minutes", id="window-negative"),
    pytest.param({"window_cron": "0 2 * * SUN", "window_minutes": "60"}, "window_minutes", id="window-string"),
    pytest.param({"window_cron": "0 2 * * SUN", "window_timezone": "Mars/Olympus"}, "window_timezone",
                 id="unknown-timezone"),
])
def test_bad_values_are_permanent_errors_naming_the_field(changes: dict, field: str) -> None:
    with pytest.raises(PermanentError, match=f"^{field.replace('.', '[.]')}"):
        MigrationSpec.from_params({**BASE, **changes})


def test_a_single_old_group_may_be_given_as_a_string() -> None:
    assert MigrationSpec.from_params({**BASE, "old_nodegroups": "ng-a"}).old_nodegroups == ("ng-a",)


@pytest.mark.parametrize(("ref", "expected"), [
    pytest.param("twin:cilium", str(REPO_ROOT / "twin" / "charts" / "cilium"), id="twin-chart"),
    pytest.param("oci://quay.io/cilium/charts/cilium", "oci://quay.io/cilium/charts/cilium", id="oci"),
    pytest.param("/opt/charts/cilium", "/opt/charts/cilium", id="local-path"),
])
def test_chart_references_resolve(ref: str, expected: str) -> None:
    assert resolve_chart(ref) == expected
