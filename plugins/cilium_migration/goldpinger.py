"""goldpinger, the connectivity checker: deploy the runbook's objects, restart it, read ``/check_all``.

``/check_all`` is read through the API server's service proxy (no load balancer needed); the verdict
itself is ``cilium_migration.mesh.evaluate``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cilium_migration.audit import Change
from cilium_migration.clients import items, read_or_none

MANIFEST = Path(__file__).with_name("manifests") / "goldpinger.yaml"
NAME = "goldpinger"
LABEL_SELECTOR = "app.kubernetes.io/name=goldpinger"
SERVICE_PORT = "8080"

Obj = dict[str, Any]


def manifests() -> list[Obj]:
    import yaml

    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def _methods(clients: Any, kind: str) -> tuple[Any, Any]:
    """(read, create) client methods for a manifest kind."""
    table = {
        "ServiceAccount": (clients.core, "namespaced_service_account"),
        "Service": (clients.core, "namespaced_service"),
        "Role": (clients.rbac, "namespaced_role"),
        "RoleBinding": (clients.rbac, "namespaced_role_binding"),
        "DaemonSet": (clients.apps, "namespaced_daemon_set"),
        "Deployment": (clients.apps, "namespaced_deployment"),
    }
    api, suffix = table[kind]
    return getattr(api, f"read_{suffix}"), getattr(api, f"create_{suffix}")


def deploy(clients: Any, namespace: str, *, dry_run: bool = False) -> list[Change]:
    """Create each goldpinger object that is missing; existing ones are left as they are.

    In a dry run, a RoleBinding whose Role does not exist yet (the dry run did not create it) is only
    recorded: the API server checks a binding against its role's rules, so it would refuse it as 404."""
    changes = []
    dry_created: set[tuple[str, str]] = set()
    for obj in manifests():
        kind, name = obj["kind"], obj["metadata"]["name"]
        read, create = _methods(clients, kind)
        if read_or_none(read, name, namespace) is not None:
            continue
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
        ref = obj.get("roleRef") or {}
        if not (dry_run and (ref.get("kind"), ref.get("name")) in dry_created):
            create(namespace, obj, dry_run="All" if dry_run else None, _preload_content=False)
        dry_created.add((kind, name))
        changes.append(Change("create", kind, name, namespace, before=None, after={"manifest": "goldpinger.yaml"},
                              dry_run=dry_run))
    return changes


def restart(apps: Any, namespace: str, kind: str, token: str, *, dry_run: bool = False) -> list[Change]:
    """``kubectl rollout restart`` with a token instead of a timestamp: a retry with the same token is a
    no-op, so a task re-run does not restart twice."""
    from cilium_migration.readiness import RESTARTED_AT

    suffix = "namespaced_daemon_set" if kind == "DaemonSet" else "namespaced_deployment"
    obj = read_or_none(getattr(apps, f"read_{suffix}"), NAME, namespace)
    if obj is None:
        if dry_run:  # a dry run did not create it: say what would happen
            return [Change("restart", kind, NAME, namespace, before=None, after={RESTARTED_AT: token}, dry_run=True)]
        from cilium_migration.errors import PermanentError

        raise PermanentError(f"{kind} {namespace}/{NAME} not found: deploy goldpinger (deploy_goldpinger=true) "
                             "or fix goldpinger_namespace")
    annotations = ((obj.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
    before = annotations.get(RESTARTED_AT)
    if before == token:
        return []
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: token}}}}}
    getattr(apps, f"patch_{suffix}")(NAME, namespace, body, dry_run="All" if dry_run else None, _preload_content=False)
    return [Change("restart", kind, NAME, namespace, before={RESTARTED_AT: before}, after={RESTARTED_AT: token},
                   dry_run=dry_run)]


def from_before_restart(apps: Any, namespace: str, pod_list: list[Obj]) -> list[str]:
    """The live goldpinger pods whose ``restartedAt`` differs from their DaemonSet's or Deployment's
    current template: after ``restart`` they still run, healthy, until the rollout replaces them, and a
    mesh judged on them would pass on pods from before the restart."""
    from cilium_migration.readiness import RESTARTED_AT, controller_of, name_of

    wanted: dict[str, str | None] = {}  # pod owner kind -> restartedAt of its workload's template
    for owner, read in (("DaemonSet", apps.read_namespaced_daemon_set), ("ReplicaSet", apps.read_namespaced_deployment)):
        obj = read_or_none(read, NAME, namespace) or {}
        template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
        wanted[owner] = (template.get("annotations") or {}).get(RESTARTED_AT)
    stale = []
    for pod in pod_list:
        meta = pod.get("metadata") or {}
        kind = (controller_of(pod) or {}).get("kind")
        if meta.get("deletionTimestamp") or kind not in wanted:
            continue
        if (meta.get("annotations") or {}).get(RESTARTED_AT) != wanted[kind]:
            stale.append(name_of(pod))
    return sorted(stale)


def pods(core: Any, namespace: str) -> list[Obj]:
    return items(core.list_namespaced_pod, namespace, label_selector=LABEL_SELECTOR)


def check_all(core: Any, namespace: str) -> Obj:
    """``GET .../services/goldpinger:8080/proxy/check_all``, parsed (the client would return a repr)."""
    resp = core.connect_get_namespaced_service_proxy_with_path(
        f"{NAME}:{SERVICE_PORT}", namespace, "check_all", _preload_content=False)
    return dict(json.loads(resp.data))
