"""The vpc-cni add-on's configuration values and EKS's answers, without a server.

Covers: the fence goes into the configuration's affinity (its own, else aws-node's) keeping every other
value, and comes out again for the snapshot (a configuration without the fence is recorded verbatim); no
add-on (404) means the self-managed path (None); an add-on change in progress and throttling are
temporary, a denied action permanent and naming the policy; a failed apply is permanent with EKS's health
issue; a wait that runs out is temporary.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cilium_migration import addons, aws_node
from cilium_migration.errors import PermanentError, TemporaryError

DEFAULT_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}}
DS = {"spec": {"template": {"spec": {"affinity": DEFAULT_AFFINITY}}}}
WAIT = addons.Wait(timeout=0.05, poll=0.01)


def error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} from EKS"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


class FakeEks:
    """An EKS client holding one add-on (or none); ``fail`` maps a method to the error it raises; updates
    land with ``then`` as the add-on's status."""

    def __init__(self, addon: dict[str, Any] | None, *, fail: dict[str, ClientError] | None = None,
                 then: str = "ACTIVE", issues: list[dict[str, str]] | None = None) -> None:
        self.addon, self.fail, self.then, self.issues = addon, fail or {}, then, issues or []
        self.calls: list[str] = []

    def _maybe_fail(self, method: str) -> None:
        self.calls.append(method)
        if method in self.fail:
            raise self.fail[method]

    def describe_addon(self, **kwargs: Any) -> dict[str, Any]:
        self._maybe_fail("describe_addon")
        if self.addon is None:
            raise error("ResourceNotFoundException", 404)
        return {"addon": dict(self.addon)}

    def update_addon(self, **kwargs: Any) -> dict[str, Any]:
        self._maybe_fail("update_addon")
        assert self.addon is not None and kwargs["resolveConflicts"] == "OVERWRITE"
        self.addon = {**self.addon, "configurationValues": kwargs["configurationValues"], "status": self.then,
                      "health": {"issues": self.issues}}
        return {"update": {"id": "u-1"}}


def addon(values: dict[str, Any] | None = None, status: str = "ACTIVE") -> dict[str, Any]:
    return {"addonName": "vpc-cni", "addonVersion": "v1.19.0-eksbuild.1", "status": status,
            "configurationValues": json.dumps(values) if values is not None else ""}


# ---- configuration values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "affinity_from"), [
    pytest.param({}, "aws-node", id="default-affinity-from-aws-node"),
    pytest.param({"env": {"WARM_ENI_TARGET": "1"}}, "aws-node", id="other-values-kept"),
    pytest.param({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}]}}}},
        "configuration", id="own-affinity"),
])
def test_the_fence_goes_in_and_out_of_the_configuration(values: dict[str, Any], affinity_from: str) -> None:
    wanted = addons.fenced(values, DS)
    assert addons.has_fence(wanted) and not addons.has_fence(values)
    assert {k: v for k, v in wanted.items() if k != "affinity"} == {k: v for k, v in values.items()
                                                                     if k != "affinity"}
    base = DEFAULT_AFFINITY if affinity_from == "aws-node" else values["affinity"]
    assert aws_node.unfenced_affinity(wanted["affinity"]) == base
    recorded = addons.snapshot(addon(wanted))
    assert recorded is not None
    assert not addons.has_fence(addons.configuration(recorded)), "the snapshot is the pre-migration state"


def test_a_configuration_without_the_fence_is_recorded_verbatim() -> None:
    text = "env:\n  WARM_ENI_TARGET: '1'\n"  # YAML, as the console may store it
    recorded = addons.snapshot({**addon(), "configurationValues": text})
    assert recorded is not None and recorded["configurationValues"] == text
    assert addons.configuration(recorded) == {"env": {"WARM_ENI_TARGET": "1"}}
    assert addons.snapshot(None) is None


# ---- EKS's answers --------------------------------------------------------------------------------------------


def test_no_addon_means_the_self_managed_path() -> None:
    eks = FakeEks(None)
    assert addons.describe(eks, "dc") is None
    assert addons.fence(eks, None, "dc", wait=WAIT) is None
    assert addons.delete(eks, None, "dc", wait=WAIT) is None
    assert addons.restore(eks, "dc", None, wait=WAIT) is None


@pytest.mark.parametrize(("method", "code", "status", "kind", "words"), [
    pytest.param("update_addon", "ResourceInUseException", 409, TemporaryError,
                 "another change of the add-on is in progress", id="in-use"),
    pytest.param("describe_addon", "ThrottlingException", 400, TemporaryError, "ThrottlingException",
                 id="throttled"),
    pytest.param("update_addon", "AccessDeniedException", 403, PermanentError, "deploy/iam-policy.json",
                 id="denied"),
    pytest.param("update_addon", "InvalidParameterException", 400, PermanentError, "retrying cannot help",
                 id="invalid"),
])
def test_eks_errors(method: str, code: str, status: int, kind: type, words: str) -> None:
    class Apps:
        def read_namespaced_daemon_set(self, *args: Any, **kwargs: Any) -> Any:
            return type("Resp", (), {"data": json.dumps(DS).encode()})()

    eks = FakeEks(addon({}), fail={method: error(code, status)})
    with pytest.raises(kind, match=words):
        addons.fence(eks, Apps(), "dc", wait=WAIT)


def test_a_failed_apply_is_permanent_with_the_health_issue() -> None:
    issue = {"code": "ConfigurationConflict", "message": "Conflicts found when trying to apply"}
    eks = FakeEks(addon({}), then="UPDATE_FAILED", issues=[issue])
    with pytest.raises(PermanentError, match="UPDATE_FAILED: ConfigurationConflict: Conflicts found"):
        addons.restore(eks, "dc", {"version": "v1.19.0-eksbuild.1", "configurationValues": '{"env": {}}'},
                       wait=WAIT)


def test_a_change_still_in_progress_after_the_timeout_is_temporary() -> None:
    eks = FakeEks(addon({}, status="UPDATING"))
    with pytest.raises(TemporaryError, match="still UPDATING"):
        addons.settle(eks, "dc", WAIT)


def test_an_addon_holding_the_recorded_configuration_is_left_alone() -> None:
    eks = FakeEks(addon({"env": {"WARM_ENI_TARGET": "1"}}))
    recorded = {"version": "v1.19.0-eksbuild.1", "configurationValues": '{"env":{"WARM_ENI_TARGET":"1"}}'}
    assert addons.restore(eks, "dc", recorded, wait=WAIT) == []
    assert eks.calls == ["describe_addon"]
