"""Airflow's public REST API (v2), as a person or a script drives a run: trigger, watch, approve."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
# Answering an approval within seconds of it starting to wait can race the scheduler (LocalExecutor),
# which then fails the try; a person never answers that fast, and neither do we.
MIN_APPROVAL_AGE_S = 6.0


@dataclass
class PendingApproval:
    """A human-in-the-loop task waiting for an answer."""

    task_id: str
    map_index: int
    subject: str
    body: str
    options: list[str]
    try_number: int = 1
    age_s: float = 0.0


class AirflowRest:
    """A token-authenticated client for one Airflow API server."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.username, self.password = username, password
        self.session = requests.Session()
        self.session.trust_env = False

    def login(self) -> None:
        """Exchange username and password for a bearer token (SimpleAuthManager: POST /auth/token)."""
        resp = self.session.post(f"{self.base_url}/auth/token",
                                 json={"username": self.username, "password": self.password}, timeout=30)
        resp.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v2{path}``; log in again once on 401; raise on other errors with the body."""
        for attempt in range(2):
            resp = self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=60, **kwargs)
            if resp.status_code == 401 and attempt == 0:
                self.login()
                continue
            if not resp.ok:
                raise requests.HTTPError(f"{method} {path} -> {resp.status_code}: {resp.text[:500]}",
                                         response=resp)
            return resp.json() if resp.content else None
        raise AssertionError("unreachable")

    # ---- DAGs and runs ---------------------------------------------------------------------

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict[str, Any]:
        """Wait until the dag-processor has parsed the DAG; fail with its import error if it has one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return dict(self.request("GET", f"/dags/{dag_id}"))
            except requests.HTTPError as exc:
                if exc.response is None or exc.response.status_code != 404:
                    raise
            errors = self.request("GET", "/importErrors").get("import_errors", [])
            if errors:
                raise RuntimeError(f"DAG import errors: {errors}")
            time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} not parsed within {timeout:.0f}s")

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> str:
        """Start a run with these params; return its run id."""
        body: dict[str, Any] = {"conf": conf, "logical_date": None}
        if run_id:
            body["dag_run_id"] = run_id
        return str(self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """task_id -> state for every task instance of the run."""
        data = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        return {ti["task_id"]: ti["state"] for ti in data["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        data = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
                            params={"deserialize": True})
        return data.get("value")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        data = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                            headers={"Accept": "application/json"})
        content = data.get("content", "")
        if isinstance(content, list):
            return "\n".join(str(c.get("event", c)) if isinstance(c, dict) else str(c) for c in content)
        return str(content)

    # ---- approvals -------------------------------------------------------------------------

    def pending_approvals(self, dag_id: str, run_id: str) -> list[PendingApproval]:
        """Human-in-the-loop tasks of the run that still wait for an answer."""
        data = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/hitlDetails")
        out = []
        for d in data.get("hitl_details", []):
            ti = d.get("task_instance") or {}
            if d.get("response_received") or ti.get("state") not in ("deferred", "awaiting_input", "running"):
                continue
            created = datetime.fromisoformat(d["created_at"]) if d.get("created_at") else None
            age = (datetime.now(UTC) - created).total_seconds() if created else 0.0
            out.append(PendingApproval(ti["task_id"], ti.get("map_index", -1), d.get("subject", ""),
                                       d.get("body") or "", list(d.get("options", [])),
                                       int(ti.get("try_number") or 1), age))
        return out

    def answer(self, dag_id: str, run_id: str, approval: PendingApproval, option: str) -> None:
        """Answer a waiting approval with one of its options."""
        self.request("PATCH",
                     f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{approval.task_id}/{approval.map_index}/hitlDetails",
                     json={"chosen_options": [option], "params_input": {}})

    # ---- connections -----------------------------------------------------------------------

    def put_connection(self, conn_id: str, conn_type: str, extra: str, login: str | None = None,
                       password: str | None = None) -> None:
        """Create or replace a connection."""
        body = {"connection_id": conn_id, "conn_type": conn_type, "extra": extra, "login": login,
                "password": password}
        try:
            self.request("DELETE", f"/connections/{conn_id}")
        except requests.HTTPError as exc:
            if exc.response is None or exc.response.status_code != 404:
                raise
        self.request("POST", "/connections", json=body)

    # ---- driving a run ---------------------------------------------------------------------

    def follow(self, dag_id: str, run_id: str, *, decide: Callable[[PendingApproval], str | None],
               on_progress: Callable[[str, str | None], None] | None = None, timeout: float = 1800,
               poll: float = 2.0) -> str:
        """Poll the run until it ends: report task state changes, answer approvals with ``decide``.

        ``decide`` returns the option to choose, or None to leave the approval waiting (a person answers).
        Returns the run's final state.
        """
        seen: dict[str, str | None] = {}
        answered: set[tuple[str, int, int]] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for task_id, state in sorted(self.task_states(dag_id, run_id).items()):
                if seen.get(task_id) != state and on_progress:
                    on_progress(task_id, state)
                seen[task_id] = state
            for approval in self.pending_approvals(dag_id, run_id):
                key = (approval.task_id, approval.map_index, approval.try_number)
                if key in answered or approval.age_s < MIN_APPROVAL_AGE_S:
                    continue
                option = decide(approval)
                if option is not None:
                    self.answer(dag_id, run_id, approval, option)
                    answered.add(key)
            state = self.run_state(dag_id, run_id)
            if state in TERMINAL_RUN_STATES:
                return state
            time.sleep(poll)
        raise TimeoutError(f"run {run_id} of {dag_id} did not finish within {timeout:.0f}s")
