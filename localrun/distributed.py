"""Airflow as separate processes with CeleryExecutor on PostgreSQL and Redis: the production shape, locally.

Components: api-server, scheduler, dag-processor, triggerer and one Celery worker, each its own process
(and process group) with its own log under the Airflow home. Any of them can be killed (SIGKILL to its
process group: a crash, task runners included) and started again, as on a host that died.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from localrun.airflow import USERNAME, LocalAirflow
from localrun.services import Postgres, Redis

COMPONENTS = (("api-server",), ("scheduler",), ("dag-processor",), ("triggerer",),
              ("celery", "worker", "--concurrency", "4"))


@dataclass
class DistributedAirflow(LocalAirflow):
    """The same home and REST surface as ``LocalAirflow``, served by CeleryExecutor components."""

    postgres: Postgres | None = None
    redis: Redis | None = None
    components: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # "scheduler", "celery", ...

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
        (self.home / "passwords.json").write_text(json.dumps({USERNAME: self.password}))
        airflow = str(Path(sys.executable).parent / "airflow")
        subprocess.run([airflow, "db", "migrate"], env=self.env(), check=True, capture_output=True,
                       timeout=600)
        for args in COMPONENTS:
            self._spawn_component(args)
        self.wait_for_api(timeout)

    def _spawn_component(self, args: tuple[str, ...]) -> None:
        self.components[args[0]] = self.spawn(list(args), self.home / f"{'-'.join(args[:2])}.log")

    def kill(self, names: Iterable[str]) -> None:
        """SIGKILL these components' process groups (``scheduler``, ``triggerer``, ``celery``...) and reap
        them: no shutdown, no cleanup, running task runners die with them."""
        for name in names:
            proc = self.components.pop(name)
            try:
                os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
            self.processes.remove(proc)

    def restart(self, names: Iterable[str]) -> None:
        """Start these components again, with the same arguments and logs."""
        by_name = {args[0]: args for args in COMPONENTS}
        for name in names:
            self._spawn_component(by_name[name])

    def stop(self) -> None:
        super().stop()
        for service in (self.redis, self.postgres):
            if service:
                service.stop()
