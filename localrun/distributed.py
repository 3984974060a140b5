"""Airflow as separate processes with CeleryExecutor on PostgreSQL and Redis: the production shape, locally.

Components: api-server, scheduler, dag-processor, triggerer and one Celery worker, each its own process
(and process group) with its own log under the Airflow home.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from localrun.airflow import USERNAME, LocalAirflow
from localrun.services import Postgres, Redis

COMPONENTS = (("api-server",), ("scheduler",), ("dag-processor",), ("triggerer",),
              ("celery", "worker", "--concurrency", "4"))


@dataclass
class DistributedAirflow(LocalAirflow):
    """The same home and REST surface as ``LocalAirflow``, served by CeleryExecutor components."""

    postgres: Postgres | None = None
    redis: Redis | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = super().env()
        assert self.postgres and self.redis
        env.update({
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url,
            "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.postgres.url.replace("+psycopg2", ""),
            "AIRFLOW__API_AUTH__JWT_SECRET": "local-distributed-run-secret-0123456789abcdef",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
        })
        return env

    def start(self, timeout: float = 240) -> None:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.postgres = Postgres(self.home / "postgres")
        self.redis = Redis(self.home / "redis")
        self.postgres.start()
        self.redis.start()
        (self.home / "passwords.json").write_text(f'{{"{USERNAME}": "{self.password}"}}')
        airflow = str(Path(sys.executable).parent / "airflow")
        subprocess.run([airflow, "db", "migrate"], env=self.env(), check=True, capture_output=True,
                       timeout=600)
        for args in COMPONENTS:
            log = (self.home / f"{'-'.join(args[:2])}.log").open("ab")
            self.processes.append(subprocess.Popen([airflow, *args], env=self.env(), stdout=log,
                                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                   start_new_session=True))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p.args for p in self.processes if p.poll() is not None]
            if dead:
                raise RuntimeError(f"Airflow components exited: {dead}; see logs in {self.home}")
            try:
                if requests.get(f"{self.url}/api/v2/version", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow API did not answer within {timeout:.0f}s; see logs in {self.home}")

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                try:
                    os.killpg(os.getpgid(proc.pid), signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
        for service in (self.redis, self.postgres):
            if service:
                service.stop()
