"""Integration fixtures: a running twin reached the way a task reaches a cluster, through the Airflow
connections ``aws_default`` and ``kubernetes_default`` given as ``AIRFLOW_CONN_*`` environment variables.

``twin`` (one default-scenario twin per module, connected) and ``clients`` (the DAG's clients built from
those connections) serve modules that need nothing more particular; a module may define its own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from cilium_migration.clients import Clients
from twin.cluster import Twin
from twin.config import FAST
from twin.scenario import load_scenario


@contextmanager
def connected_twin(scenario: str = "default", *, aws_login: str | None = None,
                   **twin_args: Any) -> Iterator[Twin]:
    """A started twin of ``scenario`` whose connections are in the environment until it stops
    (``aws_login``: the access key the DAG's AWS connection uses, to tell its calls from the test's)."""
    t = Twin(load_scenario(scenario), timing=twin_args.pop("timing", FAST), **twin_args)
    t.start()
    mp = pytest.MonkeyPatch()
    for key, conn in t.airflow_connections().items():
        if key == "AIRFLOW_CONN_AWS_DEFAULT" and aws_login is not None:
            conn = {**conn, "login": aws_login}
        mp.setenv(key, json.dumps(conn))
    try:
        yield t
    finally:
        mp.undo()
        t.stop()


@pytest.fixture(scope="module")
def twin() -> Iterator[Twin]:
    with connected_twin() as t:
        yield t


@pytest.fixture(scope="module")
def clients(twin: Twin) -> Clients:
    return Clients(aws_conn_id="aws_default", kubernetes_conn_id="kubernetes_default", region="us-west-1")
