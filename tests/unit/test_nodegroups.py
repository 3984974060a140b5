"""Node groups: the scaling config (desired size set, min/max widened only as far as needed), and EKS
errors (an update in progress or throttling is temporary; a refusal is permanent and says what to fix)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from cilium_migration.errors import PermanentError, TemporaryError
from cilium_migration.nodegroups import describe, describe_cluster, scale, scaling_for


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


# ---- EKS errors: temporary ones retry, permanent ones say what to fix -------------------------------

class FakeEks:
    """An EKS client whose calls raise the given botocore error."""

    def __init__(self, code: str, status: int, *, on: str = "describe_nodegroup") -> None:
        self.error = ClientError({"Error": {"Code": code, "Message": f"{code} from EKS"},
                                  "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")
        self.on = on

    def describe_nodegroup(self, **kwargs: object) -> dict:
        if self.on == "describe_nodegroup":
            raise self.error
        return {"nodegroup": {"scalingConfig": {"minSize": 0, "maxSize": 3, "desiredSize": 0}}}

    def describe_cluster(self, **kwargs: object) -> dict:
        raise self.error

    def update_nodegroup_config(self, **kwargs: object) -> dict:
        raise self.error


@pytest.mark.parametrize(("code", "status", "words"), [
    pytest.param("ResourceInUseException", 409, "update of the node group is in progress", id="update-in-progress"),
    pytest.param("ThrottlingException", 400, "ThrottlingException", id="throttled"),
    pytest.param("TooManyRequestsException", 429, "TooManyRequestsException", id="too-many-requests"),
    pytest.param("ServiceUnavailableException", 503, "ServiceUnavailableException", id="unavailable"),
])
def test_scaling_into_a_temporary_eks_error_is_temporary(code: str, status: int, words: str) -> None:
    with pytest.raises(TemporaryError, match=words) as err:
        scale(FakeEks(code, status, on="update_nodegroup_config"), "dc", "ng-cilium", 3)
    assert "scale node group 'ng-cilium' to 3" in str(err.value)


@pytest.mark.parametrize(("code", "status", "fix"), [
    pytest.param("InvalidParameterException", 400, "check the params", id="invalid-parameter"),
    pytest.param("AccessDeniedException", 403, "iam-policy.json", id="access-denied"),
    pytest.param("ClientException", 400, "retrying cannot help", id="client-error"),
])
def test_a_refused_scale_is_permanent_and_says_what_to_fix(code: str, status: int, fix: str) -> None:
    with pytest.raises(PermanentError, match=fix) as err:
        scale(FakeEks(code, status, on="update_nodegroup_config"), "dc", "ng-cilium", 3)
    assert code in str(err.value) and "ng-cilium" in str(err.value)


def test_a_missing_node_group_or_cluster_is_permanent_and_named() -> None:
    with pytest.raises(PermanentError, match="node group 'ng-x' not found in cluster 'dc'"):
        describe(FakeEks("ResourceNotFoundException", 404), "dc", "ng-x")
    with pytest.raises(PermanentError, match="check cluster_name and region"):
        describe_cluster(FakeEks("ResourceNotFoundException", 404), "dc")


def test_an_unknown_eks_error_is_left_to_the_tasks_retries() -> None:
    with pytest.raises(ClientError):
        describe(FakeEks("ExpiredTokenException", 403), "dc", "ng-1")
