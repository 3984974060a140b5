"""Injected request faults: bursts of ``count`` answers, outages of ``seconds``, Retry-After, and EKS errors.

Covers: an outage answers every matching request from the moment it is set and expires by itself,
whatever ``count`` says; other paths and methods are served meanwhile; bursts still shrink by one per
request; ``retry_after`` is sent as the ``Retry-After`` header and in the Status body; the admin
endpoint sets an outage and shows the seconds left; EKS faults answer an operation with its AWS error
as boto3 parses it (code and status), are recorded, and leave other operations alone.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from twin import eks
from twin.admin import AdminApi
from twin.apiserver import ApiServer
from twin.faults import ApiFault, EksFault, Faults
from twin.resources import NODES
from twin.store import Store

REGION = "us-west-1"


def _get(api: ApiServer, path: str, method: str = "GET") -> tuple[int, dict[str, str], dict]:
    req = urllib.request.Request(api.url + path, method=method, headers={"Authorization": f"Bearer {api.token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"{}")


@pytest.fixture
def node(store: Store) -> None:
    store.create(NODES, {"metadata": {"name": "n1"}})


# ---- outages -------------------------------------------------------------------------------------

def test_an_outage_answers_every_matching_request_until_it_expires(api_server: ApiServer, faults: Faults,
                                                                   node: None) -> None:
    faults.update({"api": [{"path": "^/api/v1/nodes", "status": 503, "seconds": 0.5, "count": 1}]})
    codes = [_get(api_server, "/api/v1/nodes")[0] for _ in range(5)]
    assert codes == [503] * 5, "count is ignored while the outage lasts"
    assert _get(api_server, "/api/v1/namespaces")[0] == 200, "other paths are served"
    time.sleep(0.6)
    assert _get(api_server, "/api/v1/nodes")[0] == 200


def test_an_outage_can_be_limited_to_one_method(api_server: ApiServer, faults: Faults, node: None) -> None:
    faults.api.append(ApiFault(path="^/api", status=500, seconds=5, method="DELETE"))
    assert _get(api_server, "/api/v1/nodes")[0] == 200
    assert _get(api_server, "/api/v1/nodes/n1", method="DELETE")[0] == 500


def test_a_burst_still_ends_after_count_answers(api_server: ApiServer, faults: Faults, node: None) -> None:
    faults.api.append(ApiFault(path="^/api/v1/nodes", status=500, count=2))
    assert [_get(api_server, "/api/v1/nodes")[0] for _ in range(3)] == [500, 500, 200]
    assert faults.to_dict()["api"][0]["count"] == 0


@pytest.mark.parametrize(("status", "retry_after", "header"), [
    pytest.param(503, 3, "3", id="503-with-retry-after"),
    pytest.param(429, 2, "2", id="429-with-retry-after"),
    pytest.param(429, None, "1", id="429-says-1s-by-default"),
    pytest.param(503, None, None, id="503-says-nothing-by-default"),
    pytest.param(500, 3, None, id="500-never-says"),
])
def test_retry_after_is_sent_as_the_header_and_in_the_status(api_server: ApiServer, faults: Faults,
                                                            status: int, retry_after: int | None,
                                                            header: str | None) -> None:
    faults.api.append(ApiFault(path="^/api/v1/nodes", status=status, count=1, retry_after=retry_after))
    code, headers, body = _get(api_server, "/api/v1/nodes")
    assert code == status and body["code"] == status
    assert headers.get("Retry-After") == header
    assert (body.get("details") or {}).get("retryAfterSeconds") == (int(header) if header else None)


def test_the_admin_endpoint_sets_an_outage_and_shows_the_seconds_left(api_server: ApiServer, faults: Faults,
                                                                      store: Store, node: None) -> None:
    api_server.add_route("/_twin/", AdminApi(store=store, faults=faults, request_log=lambda: [],
                                             disruptions=lambda: []))
    body = json.dumps({"api": [{"path": "^/api", "status": 503, "seconds": 60}]}).encode()
    req = urllib.request.Request(api_server.url + "/_twin/faults", data=body, method="PATCH",
                                 headers={"Authorization": f"Bearer {api_server.token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        shown = json.loads(resp.read())["api"][0]
    assert shown["status"] == 503 and 59 <= shown["seconds"] <= 60
    assert _get(api_server, "/api/v1/nodes")[0] == 503
    assert _get(api_server, "/_twin/faults")[0] == 200, "the admin routes are never faulted"


def test_a_bad_fault_is_refused() -> None:
    with pytest.raises(TypeError):
        Faults().update({"api": [{"path": "^/api", "seconds": 1, "minutes": 2}]})


# ---- EKS -----------------------------------------------------------------------------------------

@pytest.fixture
def faulty_eks(eks_server: eks.EksServer) -> Iterator[tuple[eks.EksServer, Faults]]:
    client = eks_server.client()
    eks.create_cluster(client, name="dc-faults", version="1.30")
    eks.create_nodegroup(client, cluster="dc-faults", name="ng-1", instance_type="m5.large", desired=1,
                         min_size=0, max_size=3)
    faults = Faults()
    eks_server.faults = faults
    try:
        yield eks_server, faults
    finally:
        eks_server.faults = None
        eks.forget_cluster(REGION, "dc-faults")


def _scale(client: object, size: int) -> None:
    client.update_nodegroup_config(clusterName="dc-faults", nodegroupName="ng-1",  # type: ignore[attr-defined]
                                   scalingConfig={"minSize": 0, "maxSize": 3, "desiredSize": size})


def test_an_eks_fault_answers_the_operation_with_its_aws_error(faulty_eks: tuple[eks.EksServer, Faults]) -> None:
    server, faults = faulty_eks
    client = server.client()
    faults.eks.append(EksFault(action="UpdateNodegroupConfig", code="ResourceInUseException", count=1))
    seen = len(server.request_log)
    with pytest.raises(ClientError) as err:
        _scale(client, 2)
    assert err.value.response["Error"]["Code"] == "ResourceInUseException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    client.describe_nodegroup(clusterName="dc-faults", nodegroupName="ng-1")  # other operations are served
    _scale(client, 2)  # the burst is spent
    assert [(r.action, r.code) for r in server.request_log[seen:]] == [
        ("UpdateNodegroupConfig", 409), ("DescribeNodegroup", 200), ("UpdateNodegroupConfig", 200)]


def test_an_eks_outage_expires_by_itself(faulty_eks: tuple[eks.EksServer, Faults]) -> None:
    server, faults = faulty_eks
    client = server.client()
    faults.update({"eks": [{"action": "Describe.*", "code": "AccessDeniedException", "seconds": 0.3}]})
    assert faults.eks[0].status == 403, "the status follows the code"
    with pytest.raises(ClientError, match="AccessDeniedException"):
        client.describe_cluster(name="dc-faults")
    time.sleep(0.4)
    assert client.describe_cluster(name="dc-faults")["cluster"]["name"] == "dc-faults"
