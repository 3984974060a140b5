"""The DAG's Params: JSON schemas that refuse bad values at trigger time and agree with MigrationSpec."""

from __future__ import annotations

import pytest

from cilium_migration.params import dag_params, schemas, strategy_schemas
from cilium_migration.spec import IN_PLACE, NODE_POOL, MigrationSpec

SHARED = {"cluster_name", "region", "old_nodegroups", "cilium_chart", "cilium_version", "cilium_values",
          "egress_masquerade_interface", "goldpinger_namespace", "deploy_goldpinger", "eviction_batch_size",
          "force_evictions", "allow_network_policies", "timeouts", "dry_run", "aws_conn_id",
          "kubernetes_conn_id", "accept_eni_differences", "check_operator_iam", "autoscaler", "window_cron",
          "window_minutes", "window_timezone", "strategy"}


def test_every_spec_field_the_brief_names_is_a_param_of_the_node_pool_dag() -> None:
    assert set(strategy_schemas(NODE_POOL)) == SHARED | {"new_nodegroup", "new_node_count"}


def test_the_in_place_dag_has_no_new_node_group_but_a_restart_order() -> None:
    assert set(strategy_schemas(IN_PLACE)) == SHARED | {"restart_namespaces"}


@pytest.mark.parametrize("strategy", [NODE_POOL, IN_PLACE])
def test_each_dag_fixes_its_strategy(strategy: str) -> None:
    from airflow.sdk.definitions.param import ParamsDict, ParamValidationError

    params = ParamsDict(dag_params(strategy))
    assert params.validate()["strategy"] == strategy
    other = IN_PLACE if strategy == NODE_POOL else NODE_POOL
    with pytest.raises(ParamValidationError, match="strategy"):
        params["strategy"] = other


def test_in_place_defaults_make_an_in_place_spec() -> None:
    defaults = {name: schema["default"] for name, schema in strategy_schemas(IN_PLACE).items()}
    spec = MigrationSpec.from_params(defaults)
    assert spec.in_place and spec.restart_namespaces == ("kube-system",)


def test_param_defaults_make_a_valid_spec() -> None:
    defaults = {name: schema["default"] for name, schema in schemas().items()}
    spec = MigrationSpec.from_params(defaults)
    assert spec.old_nodegroups == ("ng-1",) and spec.cilium_chart == "twin:cilium"


@pytest.mark.parametrize(("name", "value"), [
    pytest.param("new_node_count", 0, id="count-zero"),
    pytest.param("new_node_count", "3", id="count-string"),
    pytest.param("old_nodegroups", [], id="no-old-groups"),
    pytest.param("region", "nowhere", id="bad-region"),
    pytest.param("timeouts", {"bogus": 1}, id="unknown-timeout"),
    pytest.param("timeouts", {"mesh": 0}, id="zero-timeout"),
    pytest.param("dry_run", "no", id="dry-run-string"),
    pytest.param("window_minutes", 0, id="window-minutes-zero"),
    pytest.param("window_minutes", -5, id="window-minutes-negative"),
    pytest.param("window_timezone", "", id="window-timezone-empty"),
])
def test_schema_refuses_bad_values_naming_the_field(name: str, value: object) -> None:
    """As at trigger time: the DAG's ParamsDict validates the run's conf."""
    from airflow.sdk.definitions.param import ParamsDict, ParamValidationError

    params = ParamsDict(dag_params())
    with pytest.raises(ParamValidationError, match=f"Invalid input for param {name}:"):
        params[name] = value
        params.validate()


def test_schema_accepts_good_values() -> None:
    params = dag_params()
    assert params["old_nodegroups"].resolve(["ng-1", "ng-2"]) == ["ng-1", "ng-2"]
    assert params["timeouts"].resolve({"mesh": 30}) == {"mesh": 30}
    assert params["cilium_version"].resolve(None) is None
