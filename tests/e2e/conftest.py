"""End-to-end fixtures: one local Airflow for the session, a fresh twin per test, connections over REST.

Each test's twin gets its own connection ids, passed to the DAG as params, so one Airflow serves every test.
The DAG runs as the least-privilege identity of ``deploy/rbac/``: each twin enforces that file for the
token in the DAG's Kubernetes connection (the tests' own setup and assertions use the admin token).
Teardown always runs: a run the test left going is marked failed (the DAG allows one active run, so it
would block the next test), the twin is stopped, and at the end of the session Airflow is stopped.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from localrun.airflow import USERNAME, LocalAirflow
from localrun.demo import DAG_ID
from localrun.rest import AirflowRest
from tests.e2e.helpers import stop_active_runs
from twin.cluster import Twin

CLUSTERROLE = Path(__file__).resolve().parents[2] / "deploy" / "rbac" / "clusterrole.yaml"
TIMING_SCALE = 0.15  # the twin's delays (node provisioning, pod start, ...) at 15%: a run takes ~80 s


@dataclass
class Connected:
    """A running twin and the Airflow connection ids that reach it."""

    twin: Twin
    aws_conn_id: str
    kubernetes_conn_id: str


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session Airflow's home: its database, every component's log and every task log."""
    return tmp_path_factory.mktemp("airflow-home")


@pytest.fixture(scope="session")
def airflow(airflow_home: Path) -> Iterator[AirflowRest]:
    af = LocalAirflow(home=airflow_home)
    try:
        af.start()
        rest = AirflowRest(af.url, USERNAME, af.password)
        rest.login()
        rest.wait_for_dag(DAG_ID)
        yield rest
    finally:
        af.stop()


def connect(rest: AirflowRest, twin: Twin) -> tuple[str, str]:
    """Create an AWS and a Kubernetes connection (the RBAC identity when the twin has one) for this twin;
    return their ids."""
    conns = twin.airflow_connections(token=twin.rbac_token or None)
    suffix = uuid.uuid4().hex[:8]
    ids = []
    for var, prefix in (("AIRFLOW_CONN_AWS_DEFAULT", "twin_aws"), ("AIRFLOW_CONN_KUBERNETES_DEFAULT", "twin_k8s")):
        conn = conns[var]
        extra = conn.get("extra", {})
        conn_id = f"{prefix}_{suffix}"
        rest.put_connection(conn_id, conn["conn_type"], extra if isinstance(extra, str) else json.dumps(extra),
                            login=conn.get("login"), password=conn.get("password"))
        ids.append(conn_id)
    return ids[0], ids[1]


@contextmanager
def connected_twin(rest: AirflowRest, tmp_path: Path, scenario: str = "default") -> Iterator[Connected]:
    """A twin of ``scenario`` with fast timing, reachable from Airflow; stopped (and any run of the
    DAG still going marked failed) on the way out, whatever happened."""
    from twin.config import Timing
    from twin.scenario import load_scenario

    twin = Twin(load_scenario(scenario), timing=Timing().scaled(TIMING_SCALE), rbac=CLUSTERROLE)
    twin.start()
    try:
        aws_id, k8s_id = connect(rest, twin)
        yield Connected(twin, aws_id, k8s_id)
    finally:
        stop_active_runs(rest)
        twin.stop()


@pytest.fixture
def cluster(airflow: AirflowRest, tmp_path: Path) -> Iterator[Connected]:
    with connected_twin(airflow, tmp_path) as connected:
        yield connected
