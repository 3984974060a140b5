"""Change records: one log line with before/after, a JSON round trip for XCom, the run's report."""

from __future__ import annotations

import json
import logging

import pytest

from cilium_migration.audit import Change, log_changes, report


def test_a_change_logs_its_target_and_before_after() -> None:
    c = Change("label", "Node", "ip-1", before={"cni": None}, after={"cni": "aws-cni"})
    assert c.log_line() == 'label Node ip-1: before={"cni":null} after={"cni":"aws-cni"}'


def test_a_dry_run_change_says_would() -> None:
    c = Change("patch", "DaemonSet", "aws-node", "kube-system", before=1, after=2, dry_run=True)
    assert c.log_line().startswith("[dry run] would patch DaemonSet kube-system/aws-node")


def test_changes_survive_xcom_as_json() -> None:
    c = Change("scale", "Nodegroup", "ng-cilium", before={"desiredSize": 0}, after={"desiredSize": 3})
    assert Change.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_log_changes_logs_each_and_returns_dicts(caplog: pytest.LogCaptureFixture) -> None:
    changes = [Change("cordon", "Node", "a"), Change("cordon", "Node", "b")]
    with caplog.at_level(logging.INFO):
        out = log_changes(changes)
    assert [d["name"] for d in out] == ["a", "b"]
    assert sum("CHANGE cordon Node" in r.message for r in caplog.records) == 2


def test_report_lists_every_change_in_task_order_with_the_outcome() -> None:
    text = report({
        "fence_old_cni.label_old_nodes": [Change("label", "Node", "a", after={"cni": "aws-cni"}).to_dict()],
        "preflight.checks": [],
        "cutover.move_workloads": [Change("evict", "Pod", "web-1", "default").to_dict()],
    }, outcome="completed", run_id="manual__1", task_states={"x": "success", "y": "failed"})
    assert "**Outcome:** completed" in text
    assert text.index("label | Node a") < text.index("evict | Pod default/web-1")
    assert "**Failed tasks:** y" in text
    assert text.rstrip().endswith("2 change(s).")


# ---- changes of whole objects: Secrets by key and fingerprint, never by value --------------------------

PEM_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----\n"


def _secret(**data: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cilium-ca", "resourceVersion": "7"},
            "type": "Opaque", "data": data}


def test_a_created_secret_names_its_keys_with_fingerprints_only() -> None:
    from cilium_migration.audit import fingerprint, object_change

    change = object_change("Secret", "cilium-ca", "kube-system", None, _secret(**{"ca.key": PEM_KEY}))
    assert change.action == "create"
    assert change.after["data"] == {"ca.key": fingerprint(PEM_KEY)}
    assert fingerprint(PEM_KEY).startswith("sha256:") and len(fingerprint(PEM_KEY)) == len("sha256:") + 12
    assert "PRIVATE KEY" not in json.dumps(change.to_dict()) and "MIIE" not in change.log_line()


def test_a_patched_secret_names_the_keys_that_changed_and_no_value() -> None:
    from cilium_migration.audit import fingerprint, object_change

    before = _secret(**{"ca.crt": "old-cert", "ca.key": PEM_KEY})
    after = _secret(**{"ca.crt": "new-cert", "ca.key": PEM_KEY})
    change = object_change("Secret", "cilium-ca", "kube-system", before, after)
    assert change.action == "patch"
    assert change.before == {"data.ca.crt": fingerprint("old-cert")}
    assert change.after == {"data.ca.crt": fingerprint("new-cert")}
    assert "old-cert" not in change.log_line() and "new-cert" not in json.dumps(change.to_dict())


def test_an_object_whose_owned_fields_are_equal_is_unchanged() -> None:
    from cilium_migration.audit import object_change

    before = {"kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "1"}, "data": {"a": "1"}}
    after = {"kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "2"}, "data": {"a": "1"},
             "status": {"x": 1}}
    assert object_change("ConfigMap", "c", "kube-system", before, after).action == "unchanged"


def test_a_patch_records_only_the_paths_that_changed_both_ways() -> None:
    from cilium_migration.audit import object_change

    before = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "gone": "x"}}
    after = {"kind": "ConfigMap", "metadata": {"name": "c", "labels": {"l": "v"}}, "data": {"a": "2"}}
    change = object_change("ConfigMap", "c", "kube-system", before, after)
    assert change.before == {"data.a": "1", "data.gone": "x", "metadata.labels.l": None}
    assert change.after == {"data.a": "2", "data.gone": None, "metadata.labels.l": "v"}
