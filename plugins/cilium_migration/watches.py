"""What each check reads, as Kubernetes watches: a trigger re-checks as soon as one of them reports a change.

A check whose answer can change only when these objects change is watched (``watched``); the others (EKS
node groups, goldpinger's mesh results, which age with time) are polled. A watch starts at the
resourceVersion of a one-item list, so it never replays the existing objects; a stream that ends is
resumed from the last version it saw, and a 410 (too old) starts over from a fresh list.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WATCH_TIMEOUT_S = 240  # the server ends a watch after this; it is resumed at once
FALLBACK_POLL_S = 30.0  # between checks while every watch is up: only a safety net
SETTLE_S = 0.2  # after a change, for the rest of its burst (a rollout changes many objects at once)
START_WAIT_S = 5.0  # for the watches to start before the first check (so no change falls between)


@dataclass(frozen=True)
class Watched:
    """One collection to watch: ``path`` is its list path (``/api/v1/nodes``, ``/apis/apps/v1/...``)."""

    path: str

    @classmethod
    def of(cls, group_version: str, plural: str, namespace: str | None = None) -> Watched:
        root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        return cls(f"{root}/namespaces/{namespace}/{plural}" if namespace else f"{root}/{plural}")


def _nodes(_: dict[str, Any]) -> list[Watched]:
    return [Watched.of("v1", "nodes")]


def _aws_node(_: dict[str, Any]) -> list[Watched]:
    return [Watched.of("apps/v1", "daemonsets", "kube-system"), Watched.of("v1", "pods", "kube-system")]


def _pods_and_nodes(args: dict[str, Any]) -> list[Watched]:
    return [Watched.of("v1", "pods", args.get("namespace")), Watched.of("v1", "nodes")]


def _cilium(args: dict[str, Any]) -> list[Watched]:
    ns = args["namespace"]
    return [Watched.of("apps/v1", "daemonsets", ns), Watched.of("apps/v1", "deployments", ns),
            Watched.of("v1", "pods", ns), Watched.of("v1", "nodes")]


def _cilium_uninstall(args: dict[str, Any]) -> list[Watched]:
    ns = args["namespace"]
    return [Watched.of("apps/v1", "daemonsets", ns), Watched.of("v1", "configmaps", ns),
            Watched.of("v1", "pods", ns)]


def _goldpinger_deployment(args: dict[str, Any]) -> list[Watched]:
    endpoints = [Watched.of("cilium.io/v2", "ciliumendpoints", args["namespace"])] if args.get("per_pod") else []
    return [Watched.of("apps/v1", "deployments", args["namespace"]), *_pods_and_nodes(args), *endpoints]


def _pods_and_endpoints(_: dict[str, Any]) -> list[Watched]:
    return [Watched.of("v1", "pods"), Watched.of("cilium.io/v2", "ciliumendpoints")]


_WORKLOAD_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}


def _workload(args: dict[str, Any]) -> list[Watched]:
    ns = args["namespace"]
    return [Watched.of("apps/v1", _WORKLOAD_PLURALS[args["kind"]], ns), Watched.of("v1", "pods", ns)]


WATCHES: dict[str, Callable[[dict[str, Any]], list[Watched]]] = {
    "nodes_registered": _nodes,
    "nodes_ready": _nodes,
    "all_nodes_ready": _nodes,
    "aws_node_rolled_out": _aws_node,
    "aws_node_absent": _aws_node,
    "cilium_rolled_out": _cilium,
    "cilium_cni_uninstall_armed": _cilium_uninstall,
    "goldpinger_on_nodes": _pods_and_nodes,
    "goldpinger_on_cilium": _goldpinger_deployment,
    "workloads_drained": _pods_and_nodes,
    "nodes_replaced": _nodes,
    "pods_on_cni": _pods_and_endpoints,
    "workload_rolled_out": _workload,
}


def watched(check: str, arguments: dict[str, Any]) -> list[Watched]:
    """The collections whose changes can change ``check``'s verdict; empty: the check is polled."""
    spec = WATCHES.get(check)
    return spec(arguments) if spec else []


class WatchGone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class WatchError(Exception):
    """The API server refused a list or watch; ``status`` is its HTTP status (``errors.classify`` reads it)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"({status}) {message}")
        self.status = status


async def _open(api: Any, path: str, query: dict[str, str], timeout_s: float) -> Any:
    """GET ``path`` unparsed (the raw aiohttp response); a status >= 400 raises ``WatchError``."""
    resp = await api.call_api(path, "GET", query_params=list(query.items()), auth_settings=["BearerToken"],
                              _preload_content=False, _return_http_data_only=True, _request_timeout=timeout_s)
    if resp.status >= 400:
        body = (await resp.read()).decode(errors="replace")[:300]
        resp.release()
        raise WatchError(resp.status, f"GET {path}: {body}")
    return resp


async def _latest_version(api: Any, path: str) -> str:
    """The collection's current resourceVersion, from a one-item list."""
    data = await _get_json(api, path, {"limit": "1"})
    return str((data.get("metadata") or {}).get("resourceVersion") or "")


async def _get_json(api: Any, path: str, query: dict[str, str]) -> dict[str, Any]:
    resp = await _open(api, path, query, 60)
    try:
        return json.loads(await resp.read() or b"{}")
    finally:
        resp.release()


async def follow(api: Any, target: Watched, changed: asyncio.Event, *, ready: Callable[[], None] = lambda: None,
                 timeout_s: int = WATCH_TIMEOUT_S) -> None:
    """Set ``changed`` on every event of ``target``, forever (until cancelled); ``ready()`` once every change
    from now on will be seen. Errors propagate: the caller decides whether to retry or fall back to polling."""
    version = await _latest_version(api, target.path)
    ready()
    while True:
        query = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_s)}
        if version:
            query["resourceVersion"] = version
        resp = await _open(api, target.path, query, timeout_s + 30)
        try:
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise WatchGone(obj.get("message", "resourceVersion too old"))
                    raise RuntimeError(f"watch {target.path}: {obj.get('message', obj)}")
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind != "BOOKMARK":
                    changed.set()
        except WatchGone:
            version = await _latest_version(api, target.path)
            changed.set()  # something may have changed while the watch was too old
        finally:
            resp.release()


class Watching:
    """The watches of one trigger, as an async context manager: ``clear()`` before a check, then
    ``wait(delay)`` returns at the first change since, or after ``delay``.

    A watch that cannot start or is refused (401, 403, 404) leaves the trigger polling every
    ``poll_interval``; one that breaks (5xx, 429, a dropped connection) is resumed with backoff, and counts as
    a change (it may have missed one)."""

    def __init__(self, conn_id: str, targets: list[Watched], log: Any) -> None:
        self.conn_id = conn_id
        self.targets = targets
        self.log = log
        self._changed = asyncio.Event()
        self._up: set[Watched] = set()
        self._settled: set[Watched] = set()
        self._all_settled = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._conn: Any = None

    async def __aenter__(self) -> Watching:
        if not self.targets:
            return self
        try:
            from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

            self._conn = AsyncKubernetesHook(conn_id=self.conn_id).get_conn()
            api = await self._conn.__aenter__()
        except Exception as exc:
            self._conn = None
            self.log.warning("cannot watch the cluster (%s); polling instead", exc)
            return self
        self._tasks = [asyncio.create_task(self._follow(api, t)) for t in self.targets]
        try:
            await asyncio.wait_for(self._all_settled.wait(), START_WAIT_S)
        except TimeoutError:
            self.log.warning("watches not started after %ss; polling until they are", START_WAIT_S)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._conn is not None:
            await self._conn.__aexit__(None, None, None)

    @property
    def all_up(self) -> bool:
        return bool(self.targets) and len(self._up) == len(self.targets)

    def interval(self, poll_interval: float) -> float:
        """Seconds to wait for a change before checking anyway."""
        return max(poll_interval, FALLBACK_POLL_S) if self.all_up else poll_interval

    def clear(self) -> None:
        self._changed.clear()

    async def wait(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._changed.wait(), max(0.0, delay))
        except TimeoutError:
            return
        await asyncio.sleep(SETTLE_S)

    def _settle(self, target: Watched) -> None:
        self._settled.add(target)
        if len(self._settled) == len(self.targets):
            self._all_settled.set()

    async def _follow(self, api: Any, target: Watched) -> None:
        from cilium_migration.errors import Kind, classify
        from cilium_migration.retrying import full_jitter

        failures = 0

        def up() -> None:
            nonlocal failures
            failures = 0
            self._up.add(target)
            self._settle(target)

        while True:
            try:
                await follow(api, target, self._changed, ready=up)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._up.discard(target)
                self._settle(target)
                if classify(exc) is Kind.PERMANENT or getattr(exc, "status", None) in (401, 403, 404):
                    self.log.warning("watch on %s refused (%s); polling instead", target.path, exc)
                    return
                failures += 1
                self.log.info("watch on %s broke (%s); resuming", target.path, exc)
                self._changed.set()
                await asyncio.sleep(full_jitter(failures, 0.5, 30.0))
