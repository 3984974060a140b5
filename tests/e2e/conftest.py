"""End-to-end fixtures: one local Airflow for the session, a fresh twin per test, connections over REST.

Each test's twin gets its own connection ids, passed to the DAG as params, so one Airflow serves every test.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localrun.airflow import USERNAME, LocalAirflow
from localrun.demo import DAG_ID, parse_env_file
from localrun.rest import AirflowRest


@dataclass
class Connected:
    """A running twin and the Airflow connection ids that reach it."""

    twin: object
    aws_conn_id: str
    kubernetes_conn_id: str


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowRest]:
    af = LocalAirflow(home=tmp_path_factory.mktemp("airflow-home"))
    af.start()
    try:
        rest = AirflowRest(af.url, USERNAME, af.password)
        rest.login()
        rest.wait_for_dag(DAG_ID)
        yield rest
    finally:
        af.stop()


def connect(rest: AirflowRest, twin: object, tmp_path: Path) -> tuple[str, str]:
    """Create an AWS and a Kubernetes connection for this twin; return their ids."""
    env_file = tmp_path / "twin.env"
    twin.write_env_file(env_file)  # type: ignore[attr-defined]
    env = parse_env_file(env_file)
    suffix = uuid.uuid4().hex[:8]
    ids = []
    for var, prefix in (("AIRFLOW_CONN_AWS_DEFAULT", "twin_aws"), ("AIRFLOW_CONN_KUBERNETES_DEFAULT", "twin_k8s")):
        conn = json.loads(env[var])
        extra = conn.get("extra", {})
        conn_id = f"{prefix}_{suffix}"
        rest.put_connection(conn_id, conn["conn_type"], extra if isinstance(extra, str) else json.dumps(extra),
                            login=conn.get("login"), password=conn.get("password"))
        ids.append(conn_id)
    return ids[0], ids[1]


@pytest.fixture
def cluster(airflow: AirflowRest, tmp_path: Path) -> Iterator[Connected]:
    from twin.cluster import Twin
    from twin.config import Timing
    from twin.scenario import load_scenario

    twin = Twin(load_scenario("default"), timing=Timing().scaled(0.15))
    twin.start()
    try:
        aws_id, k8s_id = connect(airflow, twin, tmp_path)
        yield Connected(twin, aws_id, k8s_id)
    finally:
        twin.stop()
