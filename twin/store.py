"""The twin's object store: what etcd plus the API server's registry do for a real cluster.

Rules every caller relies on:
- Stored objects are never mutated in place. ``get``/``list`` return the stored dicts; treat them as
  read-only. To change one, use ``mutate`` (copies, applies your function, stores) or ``replace``.
- Every write bumps the cluster-wide ``resourceVersion`` and is published to watchers and listeners.
- ``metadata.generation`` grows when anything outside ``metadata`` and ``status`` changes.
- Deleting an owner deletes its dependents (ownerReferences), unless the propagation is ``Orphan``.
- ``dry_run=True`` validates and returns the would-be object without storing or publishing it.
"""

from __future__ import annotations

import copy
import queue
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from twin.delays import DelayLog
from twin.resources import BY_KEY, NAMESPACES, PODS, RESOURCE_TYPES, ResourceType

Obj = dict[str, Any]
ObjList = list[Obj]
Predicate = Callable[[Obj], bool]
Listener = Callable[[str, ResourceType, Obj, Obj | None], None]

HISTORY = 200_000  # watch events kept for resuming from a resourceVersion


class ApiError(Exception):
    """A failure the API server reports as a Kubernetes ``Status`` with this code and reason."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.plural}{"." + rt.group if rt.group else ""} "{name}" not found',
                    {"name": name, "group": rt.group, "kind": rt.plural})


def now_iso() -> str:
    """Kubernetes timestamps: RFC 3339 in UTC, whole seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WatchEvent:
    rv: int
    rt: ResourceType
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj


@dataclass
class Watch:
    """A subscription: events for one resource type (and namespace), filtered by a predicate."""

    rt: ResourceType
    namespace: str | None
    predicate: Predicate | None
    events: queue.Queue[WatchEvent | None] = field(default_factory=queue.Queue)
    closed: bool = False

    def wants(self, ev: WatchEvent) -> bool:
        if ev.rt is not self.rt:
            return False
        if self.namespace and ev.obj.get("metadata", {}).get("namespace") != self.namespace:
            return False
        return self.predicate is None or self.predicate(ev.obj)

    def next(self, timeout: float) -> WatchEvent | None:
        """The next event, or None when the timeout passes or the watch is closed."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None


class Store:
    """In-memory objects for every served resource type, with watches and listeners."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._rv = 1
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {rt.key: {} for rt in RESOURCE_TYPES}
        self._pods_by_node: dict[str, set[tuple[str, str]]] = {}
        self._history: deque[WatchEvent] = deque(maxlen=HISTORY)
        self._watches: list[Watch] = []
        self._listeners: list[Listener] = []
        self.delays = DelayLog()  # the waits the controllers impose (twin.delays)

    # ---- reads -----------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        """The stored object (read-only), or None."""
        return self._objects[rt.key].get((namespace or "" if rt.namespaced else "", name))

    def must_get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        """The stored object; ApiError 404 when absent."""
        obj = self.get(rt, namespace, name)
        if obj is None:
            raise not_found(rt, name)
        return obj

    def list(self, rt: ResourceType, namespace: str | None = None, predicate: Predicate | None = None,
             node_name: str | None = None) -> tuple[list[Obj], int]:
        """Objects sorted by (namespace, name) and the resourceVersion they were read at.

        ``node_name`` narrows pods through the node index (what a ``spec.nodeName`` field selector does).
        """
        with self.lock:
            objects = self._objects[rt.key]
            if rt is PODS and node_name is not None:
                keys: Iterable[tuple[str, str]] = self._pods_by_node.get(node_name, set())
            else:
                keys = objects.keys()
            if namespace and rt.namespaced:
                keys = [k for k in keys if k[0] == namespace]
            items = [objects[k] for k in sorted(keys)]
            rv = self._rv
        if predicate is not None:
            items = [o for o in items if predicate(o)]
        return items, rv

    # ---- writes ----------------------------------------------------------------------------

    def create(self, rt: ResourceType, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Store a new object; 409 AlreadyExists when the name is taken. ``generateName`` is honoured."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        with self.lock:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            name = meta.get("name")
            if not name:
                raise ApiError(422, "Invalid", f"{rt.kind} name is required")
            ns = (meta.get("namespace") or "default") if rt.namespaced else ""
            if rt.namespaced:
                meta["namespace"] = ns
                if self.get(NAMESPACES, None, ns) is None:
                    raise ApiError(404, "NotFound", f'namespaces "{ns}" not found',
                                   {"name": ns, "kind": "namespaces"})
            else:
                meta.pop("namespace", None)
            if (ns, name) in self._objects[rt.key]:
                raise ApiError(409, "AlreadyExists", f'{rt.plural} "{name}" already exists',
                               {"name": name, "group": rt.group, "kind": rt.plural})
            obj["apiVersion"], obj["kind"] = rt.group_version, rt.kind
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_iso()
            if rt.has_spec_generation:
                meta["generation"] = 1
            meta.pop("deletionTimestamp", None)
            if rt is NAMESPACES:
                obj.setdefault("spec", {"finalizers": ["kubernetes"]})
                obj["status"] = {"phase": "Active"}
            if dry_run:
                meta["resourceVersion"] = str(self._rv)
                return obj
            self._commit(rt, "ADDED", (ns, name), obj, None)
            return obj

    def replace(self, rt: ResourceType, obj: Obj, *, subresource: str | None = None,
                dry_run: bool = False) -> Obj:
        """Store a new version of an existing object (PUT).

        A ``metadata.resourceVersion`` that is not the current one is a 409 Conflict. On the main
        resource, status is kept from the stored object (for types with a status subresource); on
        ``status``, only status is taken from ``obj``.
        """
        meta = obj.get("metadata") or {}
        with self.lock:
            current = self.must_get(rt, meta.get("namespace"), meta.get("name", ""))
            sent_rv = meta.get("resourceVersion")
            if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict",
                               f'Operation cannot be fulfilled on {rt.plural} "{meta.get("name")}": '
                               "the object has been modified; please apply your changes to the latest "
                               "version and try again", {"name": meta.get("name"), "kind": rt.plural})
            return self._store_new_version(rt, current, copy.deepcopy(obj), subresource, dry_run)

    def mutate(self, rt: ResourceType, namespace: str | None, name: str,
               change: Callable[[Obj], Obj | None], *, subresource: str | None = None,
               dry_run: bool = False) -> Obj:
        """Copy the stored object, apply ``change`` (in place, or return a new dict), store the result.

        A change that leaves the object equal stores nothing and returns the current object.
        """
        with self.lock:
            current = self.must_get(rt, namespace, name)
            draft = copy.deepcopy(current)
            result = change(draft)
            new = draft if result is None else result
            if new == current:
                return current
            return self._store_new_version(rt, current, new, subresource, dry_run)

    def delete(self, rt: ResourceType, namespace: str | None, name: str, *, dry_run: bool = False,
               propagation: str = "Background", uid: str | None = None) -> Obj:
        """Remove an object (and, unless orphaned, its dependents); 404 when absent.

        ``uid`` is a precondition: a different stored uid is a 409 Conflict.
        """
        with self.lock:
            current = self.must_get(rt, namespace, name)
            if uid and current["metadata"].get("uid") != uid:
                raise ApiError(409, "Conflict", f"Precondition failed: UID in precondition: {uid}, "
                                                f"UID in object meta: {current['metadata'].get('uid')}")
            if dry_run:
                return current
            key = (current["metadata"].get("namespace", ""), name)
            gone = copy.deepcopy(current)
            gone["metadata"]["deletionTimestamp"] = now_iso()
            self._commit(rt, "DELETED", key, gone, current)
            if propagation != "Orphan":
                self._delete_dependents(current["metadata"]["uid"])
            if rt is NAMESPACES:
                for other in RESOURCE_TYPES:
                    if other.namespaced:
                        for k in [k for k in self._objects[other.key] if k[0] == name]:
                            self.delete(other, name, k[1])
            return gone

    # ---- watches and listeners --------------------------------------------------------------

    def watch(self, rt: ResourceType, namespace: str | None = None, predicate: Predicate | None = None,
              since: int | None = None) -> Watch:
        """Subscribe to changes after resourceVersion ``since``; with ``since`` None or 0, the
        current objects come first as ADDED events. 410 Gone when ``since`` is older than the history.
        """
        w = Watch(rt, namespace, predicate)
        with self.lock:
            if not since:
                items, rv = self.list(rt, namespace, predicate)
                for o in items:
                    w.events.put(WatchEvent(int(o["metadata"]["resourceVersion"]), rt, "ADDED", o))
            else:
                oldest = self._history[0].rv if self._history else self._rv
                if since < oldest - 1 and len(self._history) == self._history.maxlen:
                    raise ApiError(410, "Expired", f"too old resource version: {since} ({oldest})")
                for ev in self._history:
                    if ev.rv > since and w.wants(ev):
                        w.events.put(ev)
            self._watches.append(w)
        return w

    def stop_watch(self, w: Watch) -> None:
        with self.lock:
            w.closed = True
            if w in self._watches:
                self._watches.remove(w)
        w.events.put(None)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event_type, rt, obj, old)`` after every committed write, under the store lock.

        Listeners must be quick (set a flag, enqueue a key) and must not write to the store.
        """
        with self.lock:
            self._listeners.append(listener)

    # ---- internals -------------------------------------------------------------------------

    def _store_new_version(self, rt: ResourceType, current: Obj, new: Obj, subresource: str | None,
                           dry_run: bool) -> Obj:
        if subresource == "status":
            merged = copy.deepcopy(current)
            merged["status"] = new.get("status")
            new = merged
        elif "status" in rt.subresources and "status" in current:
            new["status"] = current["status"]
        meta = new.setdefault("metadata", {})
        old_meta = current["metadata"]
        for fixed in ("uid", "creationTimestamp", "namespace", "name"):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
        new["apiVersion"], new["kind"] = rt.group_version, rt.kind
        if rt.has_spec_generation:
            changed = _without_meta_status(new) != _without_meta_status(current)
            meta["generation"] = old_meta.get("generation", 1) + (1 if changed else 0)
        if dry_run:
            meta["resourceVersion"] = old_meta["resourceVersion"]
            return new
        key = (old_meta.get("namespace", ""), old_meta["name"])
        self._commit(rt, "MODIFIED", key, new, current)
        return new

    def _commit(self, rt: ResourceType, event_type: str, key: tuple[str, str], obj: Obj,
                old: Obj | None) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        objects = self._objects[rt.key]
        if event_type == "DELETED":
            objects.pop(key, None)
        else:
            objects[key] = obj
        if rt is PODS:
            self._index_pod(key, obj if event_type != "DELETED" else None, old)
        ev = WatchEvent(self._rv, rt, event_type, obj)
        self._history.append(ev)
        for w in self._watches:
            if w.wants(ev):
                w.events.put(ev)
        for listener in self._listeners:
            listener(event_type, rt, obj, old)

    def _index_pod(self, key: tuple[str, str], new: Obj | None, old: Obj | None) -> None:
        old_node = (old or {}).get("spec", {}).get("nodeName") or ""
        new_node = (new or {}).get("spec", {}).get("nodeName") or ""
        if old is not None:
            self._pods_by_node.get(old_node, set()).discard(key)
        if new is not None:
            self._pods_by_node.setdefault(new_node, set()).add(key)

    def _delete_dependents(self, owner_uid: str) -> None:
        for rt in RESOURCE_TYPES:
            for (ns, name), obj in list(self._objects[rt.key].items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == owner_uid for r in refs) and (ns, name) in self._objects[rt.key]:
                    self.delete(rt, ns, name)

    # ---- helpers for controllers and tests -------------------------------------------------

    def iter_all(self, rt: ResourceType) -> Iterator[Obj]:
        """A snapshot of every object of one type (read-only)."""
        with self.lock:
            items = list(self._objects[rt.key].values())
        return iter(items)

    def dump(self) -> dict[str, ObjList]:
        """Every stored object by resource key, sorted: the state a test compares byte for byte."""
        with self.lock:
            return {k: [v for _, v in sorted(objs.items())] for k, objs in self._objects.items()}


def _without_meta_status(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def resource_for_key(key: str) -> ResourceType:
    return BY_KEY[key]
