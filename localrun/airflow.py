"""A local Airflow 3 (``airflow standalone``: SQLite, LocalExecutor, SimpleAuthManager) for the demo and e2e tests.

Rules: everything lives under one AIRFLOW_HOME; parallelism is lowered for a 2-core machine; the
project's ``dags/`` and ``plugins/`` are used in place; the process group is stopped with SIGINT, then SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
USERNAME = "admin"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalAirflow:
    """One Airflow home and the standalone process serving it."""

    home: Path
    port: int = field(default_factory=free_port)
    password: str = "admin"
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "standalone.log"

    def env(self) -> dict[str, str]:
        """The environment every Airflow command of this home runs with."""
        venv_bin = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update({
            "PATH": venv_bin + os.pathsep + env.get("PATH", ""),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",  # the next task starts sooner (default 1)
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",  # approval timeouts apply promptly
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
            "NO_PROXY": "127.0.0.1,localhost",
        })
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 180) -> None:
        """Start ``airflow standalone`` and wait until the API answers."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({USERNAME: self.password}))
        self.spawn(["standalone"], self.log_path)
        self.wait_for_api(timeout)

    def spawn(self, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        """Run ``airflow ARGS`` in its own process group, logging to ``log_path``."""
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), *args], env=self.env(),
            stdout=log_path.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.processes.append(proc)
        return proc

    def wait_for_api(self, timeout: float) -> None:
        """Wait until ``/api/v2/version`` answers; fail early when a component exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [str(p.args) for p in self.processes if p.poll() is not None]
            if dead:
                raise RuntimeError(f"Airflow exited ({', '.join(dead)}); see the logs in {self.home}")
            try:
                if requests.get(f"{self.url}/api/v2/version", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow API did not answer within {timeout:.0f}s; see the logs in {self.home}")

    def stop(self) -> None:
        """Stop every process group (SIGINT first, as `airflow` expects, then SIGTERM, then SIGKILL)."""
        groups = []
        for proc in self.processes:
            try:
                groups.append((proc, os.getpgid(proc.pid)))
            except ProcessLookupError:
                continue
        for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGTERM, 10.0)):
            live = [(p, g) for p, g in groups if p.poll() is None]
            for _, pgid in live:
                _signal_group(pgid, sig)
            deadline = time.monotonic() + wait
            while any(p.poll() is None for p, _ in live) and time.monotonic() < deadline:
                time.sleep(0.2)
        for _, pgid in groups:
            _signal_group(pgid, signal.SIGKILL)  # stragglers: task runners, triggerer children
        self.processes.clear()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
