"""EKS managed add-ons in the twin: the add-on APIs over HTTP (boto3) and a managed vpc-cni owning aws-node.

Covers:
- the API: CreateAddon -> CREATING then ACTIVE, DescribeAddon, ListAddons, UpdateAddon (an ``update`` that
  DescribeUpdate follows to Successful), DeleteAddon -> DELETING then gone; EKS's errors as boto3 parses
  them (unknown cluster or add-on, an add-on created twice, a change while one is in progress, values
  outside the add-on's schema); each call recorded with its IAM action; EKS faults answer add-on calls;
- vpc-cni's configuration applied to aws-node (affinity, tolerations, env merged by name, resources, init
  env, images tagged with the version); a key dropped from the configuration falls back to the default;
- conflicts: a direct edit of a managed field is reverted by the next update with ``OVERWRITE``, kept with
  ``PRESERVE``, and fails the update with ``NONE``;
- DeleteAddon deletes aws-node unless ``preserve``; a new CreateAddon brings it back;
- scenarios: ``managed-vpc-cni`` extends the default with the add-on, bad values are refused at load, and a
  twin started from it has the add-on ACTIVE and its configuration on aws-node.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from twin import eks
from twin.faults import EksFault, Faults
from twin.resources import DAEMONSETS
from twin.scenario import apply_objects, load_scenario, scenario_from_yaml
from twin.store import Obj, Store

REGION = "us-west-1"
CLUSTER = "dc-addons"
FENCED = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "cni", "operator": "In", "values": ["aws-cni"]}]}]}}}
OTHER = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}]}}}


@pytest.fixture(scope="module")
def server() -> Iterator[eks.EksServer]:
    srv = eks.EksServer(region=REGION, addon_delay_s=0.05)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def cluster(server: eks.EksServer) -> Iterator[Store]:
    """The default scenario's objects (a self-managed aws-node) in a fresh store the add-ons own objects in,
    and an EKS cluster."""
    store = Store()
    apply_objects(store, load_scenario("default"))
    server.addons.store = store
    eks.create_cluster(server.client(), name=CLUSTER, version="1.30")
    try:
        yield store
    finally:
        server.faults = None
        server.addons.forget(CLUSTER)
        eks.forget_cluster(REGION, CLUSTER)


def aws_node(store: Store) -> Obj | None:
    return store.get(DAEMONSETS, "kube-system", "aws-node")


def pod_spec(store: Store) -> Obj:
    ds = aws_node(store)
    assert ds is not None
    return dict(ds["spec"]["template"]["spec"])


def container(store: Store, name: str = "aws-node", init: bool = False) -> Obj:
    key = "initContainers" if init else "containers"
    return next(c for c in pod_spec(store)[key] if c["name"] == name)


def env(store: Store, init: bool = False) -> dict[str, Any]:
    c = container(store, "aws-vpc-cni-init" if init else "aws-node", init)
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env") or []}


def settled(client: Any, name: str = "vpc-cni", timeout: float = 5.0) -> Obj | None:
    """The add-on once it is no longer CREATING, UPDATING or DELETING; None once deleted."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            addon: Obj = client.describe_addon(clusterName=CLUSTER, addonName=name)["addon"]
        except client.exceptions.ResourceNotFoundException:
            return None
        if addon["status"] not in ("CREATING", "UPDATING", "DELETING"):
            return addon
        assert time.monotonic() < deadline, f"add-on still {addon['status']}"
        time.sleep(0.02)


def create(client: Any, config: Obj | None = None, **kwargs: Any) -> Obj | None:
    values = {"configurationValues": json.dumps(config)} if config is not None else {}
    client.create_addon(clusterName=CLUSTER, addonName="vpc-cni", addonVersion="v1.19.0-eksbuild.1",
                        resolveConflicts="OVERWRITE", **values, **kwargs)
    return settled(client)


def update(client: Any, config: Obj, resolve: str = "OVERWRITE") -> tuple[Obj | None, Obj]:
    update_id = client.update_addon(clusterName=CLUSTER, addonName="vpc-cni", configurationValues=json.dumps(config),
                                    resolveConflicts=resolve)["update"]["id"]
    addon = settled(client)
    return addon, client.describe_update(name=CLUSTER, updateId=update_id, addonName="vpc-cni")["update"]


def edit_affinity(store: Store, affinity: Obj) -> None:
    """A direct edit of aws-node, as ``kubectl patch`` would make it."""
    def change(obj: Obj) -> None:
        obj["spec"]["template"]["spec"]["affinity"] = copy.deepcopy(affinity)

    store.mutate(DAEMONSETS, "kube-system", "aws-node", change)


# ---- the API -------------------------------------------------------------------------------------------------


def test_create_describe_list_update_delete(server: eks.EksServer, cluster: Store) -> None:
    client = server.client()
    created = client.create_addon(clusterName=CLUSTER, addonName="vpc-cni", addonVersion="v1.19.0-eksbuild.1",
                                  resolveConflicts="OVERWRITE")["addon"]
    assert (created["status"], created["addonName"], created["clusterName"]) == ("CREATING", "vpc-cni", CLUSTER)
    assert created["addonArn"].startswith(f"arn:aws:eks:{REGION}:{eks.account_id()}:addon/{CLUSTER}/vpc-cni/")
    addon = settled(client)
    assert addon is not None
    assert (addon["status"], addon["addonVersion"], addon["health"]) == ("ACTIVE", "v1.19.0-eksbuild.1",
                                                                          {"issues": []})
    assert client.list_addons(clusterName=CLUSTER)["addons"] == ["vpc-cni"]

    update_id = client.update_addon(clusterName=CLUSTER, addonName="vpc-cni", configurationValues="{}",
                                    resolveConflicts="OVERWRITE")["update"]["id"]
    assert client.describe_addon(clusterName=CLUSTER, addonName="vpc-cni")["addon"]["status"] == "UPDATING"
    settled(client)
    found = client.describe_update(name=CLUSTER, updateId=update_id, addonName="vpc-cni")["update"]
    assert (found["type"], found["status"], found["errors"]) == ("AddonUpdate", "Successful", [])
    assert {"type": "ConfigurationValues", "value": "{}"} in found["params"]

    assert client.delete_addon(clusterName=CLUSTER, addonName="vpc-cni")["addon"]["status"] == "DELETING"
    assert settled(client) is None
    assert client.list_addons(clusterName=CLUSTER)["addons"] == []
    actions = [r.iam_action for r in server.request_log if r.path.startswith(f"/clusters/{CLUSTER}/")]
    assert {"eks:CreateAddon", "eks:DescribeAddon", "eks:ListAddons", "eks:UpdateAddon", "eks:DescribeUpdate",
            "eks:DeleteAddon"} <= set(actions)


def _error(call: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as err:
        call()
    response = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


@pytest.mark.parametrize(("call", "code", "status", "message"), [
    pytest.param(lambda c: c.describe_addon(clusterName=CLUSTER, addonName="vpc-cni"),
                 "ResourceNotFoundException", 404, "No addon: vpc-cni found in cluster: dc-addons", id="no-addon"),
    pytest.param(lambda c: c.list_addons(clusterName="nope"), "ResourceNotFoundException", 404,
                 "No cluster found for name: nope.", id="no-cluster"),
    pytest.param(lambda c: c.create_addon(clusterName=CLUSTER, addonName="vpc-cni",
                                          configurationValues='{"replicaCount": 2}'),
                 "InvalidParameterException", 400, "$.replicaCount: is not defined in the schema", id="schema"),
    pytest.param(lambda c: c.create_addon(clusterName=CLUSTER, addonName="vpc-cni",
                                          configurationValues='{"env": {"WARM_IP_TARGET": 5}}'),
                 "InvalidParameterException", 400, "$.env.WARM_IP_TARGET: int found, string expected", id="env"),
    pytest.param(lambda c: c.create_addon(clusterName=CLUSTER, addonName="vpc-cni", addonVersion="1.19"),
                 "InvalidParameterException", 400, "Addon version specified is not supported", id="version"),
])
def test_errors_as_eks_sends_them(server: eks.EksServer, cluster: Store, call: Any, code: str, status: int,
                                  message: str) -> None:
    got = _error(lambda: call(server.client()))
    assert got[:2] == (code, status) and message in got[2], got


def test_an_addon_busy_or_present_is_in_use(server: eks.EksServer, cluster: Store) -> None:
    client = server.client()
    client.create_addon(clusterName=CLUSTER, addonName="vpc-cni", resolveConflicts="OVERWRITE")
    busy = _error(lambda: client.update_addon(clusterName=CLUSTER, addonName="vpc-cni", configurationValues="{}"))
    assert busy[:2] == ("ResourceInUseException", 409) and "CREATING" in busy[2]
    settled(client)
    twice = _error(lambda: client.create_addon(clusterName=CLUSTER, addonName="vpc-cni"))
    assert twice[:2] == ("ResourceInUseException", 409)


def test_eks_faults_answer_addon_calls(server: eks.EksServer, cluster: Store) -> None:
    client = server.client()
    create(client)
    server.faults = Faults(eks=[EksFault(action="UpdateAddon", code="ResourceInUseException", count=1)])
    assert _error(lambda: update(client, {}))[:2] == ("ResourceInUseException", 409)
    assert update(client, {})[1]["status"] == "Successful", "the burst is spent"
    assert [r.code for r in server.request_log if r.action == "UpdateAddon"][-2:] == [409, 200]


# ---- vpc-cni's configuration on aws-node ----------------------------------------------------------------------


def test_the_configuration_is_applied_to_aws_node(server: eks.EksServer, cluster: Store) -> None:
    config = {"affinity": FENCED, "tolerations": [{"key": "dedicated", "operator": "Exists"}],
              "env": {"WARM_ENI_TARGET": "2", "ENABLE_POD_ENI": "true"},
              "init": {"env": {"DISABLE_TCP_EARLY_DEMUX": "true"}}, "resources": {"requests": {"cpu": "50m"}}}
    before = env(cluster)
    addon = create(server.client(), config)
    assert addon is not None and json.loads(addon["configurationValues"]) == config
    spec = pod_spec(cluster)
    assert (spec["affinity"], spec["tolerations"]) == (FENCED, config["tolerations"])
    assert env(cluster) == {**before, "WARM_ENI_TARGET": "2", "ENABLE_POD_ENI": "true"}, "merged by name"
    assert env(cluster, init=True)["DISABLE_TCP_EARLY_DEMUX"] == "true"
    assert container(cluster)["resources"] == {"requests": {"cpu": "50m"}}
    assert container(cluster)["image"].endswith("/amazon-k8s-cni:v1.19.0-eksbuild.1")
    assert container(cluster, "aws-vpc-cni-init", init=True)["image"].endswith(":v1.19.0-eksbuild.1")


def test_a_key_dropped_from_the_configuration_falls_back_to_the_default(server: eks.EksServer,
                                                                        cluster: Store) -> None:
    default = pod_spec(cluster)["affinity"]
    client = server.client()
    create(client, {"affinity": FENCED, "env": {"WARM_ENI_TARGET": "2"}})
    addon, _ = update(client, {"env": {"WARM_ENI_TARGET": "2"}})
    assert addon is not None and addon["status"] == "ACTIVE"
    assert pod_spec(cluster)["affinity"] == default
    assert env(cluster)["WARM_ENI_TARGET"] == "2"


@pytest.mark.parametrize(("resolve", "status", "affinity"), [
    pytest.param("OVERWRITE", "ACTIVE", FENCED, id="overwrite-reverts-the-edit"),
    pytest.param("PRESERVE", "ACTIVE", OTHER, id="preserve-keeps-the-edit"),
    pytest.param("NONE", "UPDATE_FAILED", OTHER, id="none-refuses"),
])
def test_a_direct_edit_meets_the_next_update(server: eks.EksServer, cluster: Store, resolve: str, status: str,
                                             affinity: Obj) -> None:
    client = server.client()
    create(client, {"affinity": FENCED})
    edit_affinity(cluster, OTHER)
    addon, found = update(client, {"affinity": FENCED, "env": {"WARM_ENI_TARGET": "3"}}, resolve)
    assert addon is not None and addon["status"] == status
    assert pod_spec(cluster)["affinity"] == affinity
    if status == "ACTIVE":
        assert found["status"] == "Successful" and env(cluster)["WARM_ENI_TARGET"] == "3"
    else:
        assert found["status"] == "Failed" and env(cluster)["WARM_ENI_TARGET"] == "1", "nothing applied"
        assert found["errors"][0]["errorCode"] == "ConfigurationConflict"
        assert "DaemonSet.apps aws-node - affinity" in found["errors"][0]["errorMessage"]
        assert addon["health"]["issues"][0]["code"] == "ConfigurationConflict"


def test_an_update_without_changes_still_reverts_edits(server: eks.EksServer, cluster: Store) -> None:
    client = server.client()
    create(client, {"affinity": FENCED})
    edit_affinity(cluster, OTHER)
    update(client, {"affinity": FENCED})
    assert pod_spec(cluster)["affinity"] == FENCED


# ---- delete and re-create ---------------------------------------------------------------------------------------


def test_delete_removes_aws_node_and_a_new_addon_brings_it_back(server: eks.EksServer, cluster: Store) -> None:
    client = server.client()
    create(client, {"affinity": FENCED})
    client.delete_addon(clusterName=CLUSTER, addonName="vpc-cni")
    assert aws_node(cluster) is not None, "removed only when the add-on manager gets to it"
    assert settled(client) is None and aws_node(cluster) is None
    addon = create(client, {"env": {"WARM_ENI_TARGET": "4"}})
    assert addon is not None and addon["status"] == "ACTIVE"
    assert env(cluster)["WARM_ENI_TARGET"] == "4"
    assert pod_spec(cluster)["affinity"] != FENCED, "the default affinity: the old configuration is gone"


def test_delete_with_preserve_keeps_aws_node(server: eks.EksServer, cluster: Store) -> None:
    client = server.client()
    create(client, {"affinity": FENCED})
    client.delete_addon(clusterName=CLUSTER, addonName="vpc-cni", preserve=True)
    assert settled(client) is None
    assert pod_spec(cluster)["affinity"] == FENCED


# ---- scenarios --------------------------------------------------------------------------------------------------


def test_the_managed_scenario_extends_the_default() -> None:
    default, managed = load_scenario("default"), load_scenario("managed-vpc-cni")
    assert (managed.objects, managed.nodegroups) == (default.objects, default.nodegroups)
    assert [(a.name, a.version) for a in managed.addons] == [("vpc-cni", "v1.18.5-eksbuild.1")]
    assert default.addons == []


@pytest.mark.parametrize(("addon", "message"), [
    pytest.param({"name": "vpc-cni", "configurationValues": {"nodeAffinity": {}}}, "nodeAffinity", id="schema"),
    pytest.param({"name": "vpc-cni", "version": "latest"}, "not supported", id="version"),
])
def test_a_scenario_add_on_is_validated(addon: Obj, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scenario_from_yaml(json.dumps({"addons": [addon]}))


def test_a_twin_from_the_managed_scenario_starts_with_the_addon_active() -> None:
    from twin.cluster import Twin
    from twin.config import FAST

    with Twin(load_scenario("managed-vpc-cni"), timing=FAST) as twin:
        client = twin.boto3_client()
        addon = client.describe_addon(clusterName=twin.cluster_name, addonName="vpc-cni")["addon"]
        assert (addon["status"], addon["addonVersion"]) == ("ACTIVE", "v1.18.5-eksbuild.1")
        client.update_addon(clusterName=twin.cluster_name, addonName="vpc-cni", resolveConflicts="OVERWRITE",
                            configurationValues=json.dumps({"env": {"WARM_ENI_TARGET": "2"}}))
        ds = twin.store.get(DAEMONSETS, "kube-system", "aws-node")
        assert ds is not None
        twin.wait_for(lambda: (twin.store.get(DAEMONSETS, "kube-system", "aws-node") or {})["metadata"].get(
            "generation") == ds["metadata"]["generation"] + 1, 10, "the add-on's update on aws-node")
        twin.wait_for(twin.settled, 20, "aws-node rolled out", detail=twin.unsettled)
