"""Every change of every try, kept in the cluster: XCom is cleared when a task is retried or cleared, the
ledger is not.

Rules:
- One ConfigMap per run, ``cilium-migration-changes-<hash of the run id>`` in Cilium's namespace,
  annotated with the run id; one key per task try that changed something, ``<task_id>.try-<n>``, holding
  the try's change records as JSON (``audit`` records: Secrets by key and fingerprint, never a value).
- Read back in task order, then try order. A dry run writes nothing: its records stay in XCom only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from cilium_migration import owned_configmaps

PREFIX = "cilium-migration-changes-"
RUN_ANNOTATION = "cilium-migration.io/run-id"
_KEY = re.compile(r"^(?P<task>.+)\.try-(?P<try>\d+)$")


def name_for(run_id: str) -> str:
    """The run's ledger ConfigMap (a DNS-1123 name whatever the run id holds)."""
    return PREFIX + hashlib.sha256(run_id.encode()).hexdigest()[:16]


def record(core: Any, namespace: str, run_id: str, task_id: str, try_number: int,
           changes: list[dict[str, Any]], *, dry_run: bool = False) -> None:
    """Keep one try's change records (nothing when there are none)."""
    if not changes:
        return
    owned_configmaps.merge_data(core, namespace, name_for(run_id),
                                {f"{task_id}.try-{try_number}": json.dumps(changes, sort_keys=True)},
                                annotations={RUN_ANNOTATION: run_id}, dry_run=dry_run)


def read(core: Any, namespace: str, run_id: str, task_order: Iterable[str]) -> dict[str, dict[int, list[Any]]]:
    """task id -> try number -> change records, tasks in ``task_order`` (unknown ones last)."""
    data = owned_configmaps.read_data(core, namespace, name_for(run_id)) or {}
    tries: dict[str, dict[int, list[Any]]] = {}
    for key, value in data.items():
        if m := _KEY.match(key):
            tries.setdefault(m["task"], {})[int(m["try"])] = json.loads(value)
    order = {t: i for i, t in enumerate(task_order)}
    return {t: dict(sorted(tries[t].items())) for t in sorted(tries, key=lambda t: (order.get(t, len(order)), t))}


def with_tries(by_task: Mapping[str, Mapping[int, list[Any]]]) -> dict[str, list[dict[str, Any]]]:
    """task id -> its records of every try, each with its ``try`` number."""
    return {task: [{**r, "try": n} for n, records in tries.items() for r in records]
            for task, tries in by_task.items()}
