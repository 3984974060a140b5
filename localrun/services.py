"""Private PostgreSQL and Redis servers on free loopback ports, for the CeleryExecutor run.

Each server lives in its own directory and is stopped with its owner; nothing touches the system's services.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from localrun.airflow import free_port


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class LocalServer:
    """A server process of ours: a directory, a free port, and a stop that always ends it."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class Postgres(LocalServer):
    """A throwaway PostgreSQL cluster with database `airflow` owned by user `airflow`."""

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://airflow:airflow@127.0.0.1:{self.port}/airflow"

    def start(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed: run scripts/install-debian-packages.sh")
        bindir = Path(bins[-1])
        data = self.root / "pgdata"
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                     "-E", "UTF8"]), check=True, capture_output=True)
        self.process = subprocess.Popen(
            _as_postgres([str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1",
                          "-k", str(self.root), "-c", "fsync=off", "-c", "max_connections=200"]),
            stdout=(self.root / "postgres.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        psql = [str(bindir.parent / "bin" / "psql")] if (bindir / "psql").exists() else ["psql"]
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("PostgreSQL did not start; see postgres.log")
            time.sleep(0.5)
        for sql in ("CREATE USER airflow WITH PASSWORD 'airflow'", "CREATE DATABASE airflow OWNER airflow"):
            subprocess.run([*psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", sql],
                           check=True, capture_output=True)


@dataclass
class Redis(LocalServer):
    """A throwaway Redis server without persistence."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed: run scripts/install-debian-packages.sh")
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.root)],
            stdout=(self.root / "redis.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        cli = shutil.which("redis-cli")
        deadline = time.monotonic() + 30
        while cli:
            if subprocess.run([cli, "-p", str(self.port), "ping"], capture_output=True).stdout.strip() == b"PONG":
                return
            if time.monotonic() > deadline:
                raise TimeoutError("Redis did not start; see redis.log")
            time.sleep(0.3)
