"""ConfigMaps the DAG owns (its progress record, its change ledgers): read their data, merge keys in.

Rules: a merge patch adds or replaces only the keys given (two tasks writing different keys never lose
each other's); a missing ConfigMap is created with the DAG's ``managed-by`` label, and one created in the
meantime by another task is patched instead. A dry run writes nothing, not even a dry-run request: a
record of a run that changed nothing would be wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cilium_migration.clients import read_or_none
from cilium_migration.errors import api_status

MANAGED_BY = {"app.kubernetes.io/managed-by": "cilium-migration"}


def read_data(core: Any, namespace: str, name: str) -> dict[str, str] | None:
    """The ConfigMap's data, or None when it does not exist."""
    cm = read_or_none(core.read_namespaced_config_map, name, namespace)
    return None if cm is None else dict(cm.get("data") or {})


def merge_data(core: Any, namespace: str, name: str, data: Mapping[str, str], *,
               annotations: Mapping[str, str] | None = None, dry_run: bool = False) -> None:
    """Add or replace ``data``'s keys, creating the ConfigMap when it is missing."""
    if dry_run:
        return
    patch = {"data": dict(data)}
    try:
        core.patch_namespaced_config_map(name, namespace, patch, _preload_content=False)
        return
    except Exception as exc:
        if api_status(exc) != 404:
            raise
    body = {"apiVersion": "v1", "kind": "ConfigMap", "data": dict(data),
            "metadata": {"name": name, "namespace": namespace, "labels": MANAGED_BY,
                         "annotations": dict(annotations or {})}}
    try:
        core.create_namespaced_config_map(namespace, body, _preload_content=False)
    except Exception as exc:
        if api_status(exc) != 409:
            raise
        core.patch_namespaced_config_map(name, namespace, patch, _preload_content=False)
