"""docker-compose.yaml follows Airflow 3's official layout (no Docker engine here: the structure is checked).

Covers: the services, CeleryExecutor on PostgreSQL and Redis, dags/ and plugins/ mounted in every Airflow
service, health checks, the image built from this repository's Dockerfile and requirements.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker", "airflow-init")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yaml").read_text()))


def test_has_the_official_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "redis", *AIRFLOW_SERVICES}


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_airflow_services_mount_dags_and_plugins(compose: dict[str, Any], service: str) -> None:
    targets = {v.split(":")[1] for v in compose["services"][service]["volumes"]}
    assert {"/opt/airflow/dags", "/opt/airflow/plugins"} <= targets


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_airflow_services_run_celery_on_postgres_and_redis(compose: dict[str, Any], service: str) -> None:
    env = compose["services"][service]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")


@pytest.mark.parametrize("service", [s for s in AIRFLOW_SERVICES if s != "airflow-init"] + ["postgres", "redis"])
def test_long_running_services_have_health_checks(compose: dict[str, Any], service: str) -> None:
    assert compose["services"][service]["healthcheck"]["test"]


def test_commands_match_their_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    assert services["airflow-worker"]["command"] == "celery worker"


def test_image_is_built_from_this_repository(compose: dict[str, Any]) -> None:
    build = compose["services"]["airflow-scheduler"]["build"]
    assert build["context"] == "."
    dockerfile = (ROOT / build["dockerfile"]).read_text()
    assert "FROM apache/airflow:3.3.2" in dockerfile
    assert "requirements.txt" in dockerfile and "requirements-deploy.txt" in dockerfile
    deploy = (ROOT / "requirements-deploy.txt").read_text()
    assert "apache-airflow-providers-celery" in deploy and "psycopg2" in deploy


def test_workers_wait_for_the_api_server(compose: dict[str, Any]) -> None:
    depends = compose["services"]["airflow-worker"]["depends_on"]
    assert depends["airflow-apiserver"]["condition"] == "service_healthy"
    assert depends["airflow-init"]["condition"] == "service_completed_successfully"


def test_env_example_names_both_connections() -> None:
    text = (ROOT / ".env.example").read_text()
    assert "AIRFLOW_CONN_AWS_DEFAULT=" in text and "AIRFLOW_CONN_KUBERNETES_DEFAULT=" in text
