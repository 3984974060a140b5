"""The REST verbs on stored resources: get, list, watch, create, update, patch, delete, deletecollection,
and the ``status`` and ``scale`` subresources.

Reads serve the stored dicts without copying (the store never changes them in place). Every write
honours ``dryRun=All``. Lists take set-based ``labelSelector``, ``fieldSelector`` (a
``spec.nodeName=X`` clause on pods goes through the store's node index), ``limit`` and ``continue``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from twin.api import defaults, tables
from twin.api.messages import Request, Response, json_response, success_status
from twin.api.patching import APPLY_PATCH, PATCH_TYPES, PatchError, apply_patch
from twin.api.routing import Target
from twin.api.watching import DEFAULT_TIMEOUT_S, WatchStream, expired
from twin.resources import NAMESPACES, NODES, PODS, SERVICES, ResourceType
from twin.selectors import SelectorError, compile_filter, parse_field_selector
from twin.store import ApiError, Obj, Predicate, Store

# Types whose DELETE answers the deleted object; the others answer a Success Status.
RETURNS_DELETED_OBJECT = frozenset({PODS.key, SERVICES.key, NAMESPACES.key, NODES.key})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def dry_run(req: Request, options: dict[str, Any] | None = None) -> bool:
    """``dryRun=All`` as a query parameter or in the body's options; any other value is a 400."""
    values = list(req.query.get("dryRun", [])) + list((options or {}).get("dryRun") or [])
    for v in values:
        if v != "All":
            raise bad_request(f'unsupported dryRun value "{v}": only "All" is supported')
    return bool(values)


def _wants_watch(req: Request, target: Target) -> bool:
    return target.legacy_watch or (req.param("watch") or "").lower() in ("true", "1")


def _list_filter(req: Request, rt: ResourceType) -> tuple[Predicate | None, str | None]:
    """The predicate for the selectors, and the node name a pod list can be narrowed to by index."""
    label_selector, field_selector = req.param("labelSelector"), req.param("fieldSelector")
    if not label_selector and not field_selector:
        return None, None
    try:
        predicate = compile_filter(label_selector, field_selector, rt.key)
        fields = parse_field_selector(field_selector)
    except SelectorError as e:
        raise bad_request(f"unable to parse requirement: {e}") from e
    node_name = next((v for p, op, v in fields if p == "spec.nodeName" and op == "="), None)
    return predicate, node_name if rt is PODS else None


def _encode_continue(rv: int, key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps([rv, key[0], key[1]]).encode()).decode()


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        rv, namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(rv, int) or not isinstance(namespace, str) or not isinstance(name, str):
            raise ValueError(token)
    except (ValueError, TypeError, binascii.Error) as e:
        raise ApiError(410, "Expired", "The provided continue parameter is too old to display a consistent "
                                       "list result. You can start a new list without the continue "
                                       "parameter.") from e
    return namespace, name


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def _int_param(req: Request, name: str) -> int | None:
    value = req.param(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as e:
        raise bad_request(f"invalid {name} {value!r}") from e


class ResourceVerbs:
    """The verbs on the store, one method per verb; each returns a Response (or a WatchStream)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- reads -------------------------------------------------------------------------------

    def get(self, req: Request, t: Target) -> Response | WatchStream:
        rt = t.rt
        if t.name is None:
            return self.watch(req, t) if _wants_watch(req, t) else self.list(req, t)
        obj = self.store.must_get(rt, t.namespace, t.name)
        if t.subresource == "scale":
            return json_response(scale_of(obj))
        if t.subresource == "log":
            return Response(200, b"", "text/plain")
        if t.subresource not in (None, "status"):
            raise ApiError(405, "MethodNotAllowed", f"GET is not supported on {rt.plural}/{t.subresource}")
        if tables.wants_table(req.header("accept")):
            return json_response(tables.table(rt, [obj], include_object=req.param("includeObject") or "Metadata",
                                              list_meta={"resourceVersion": obj["metadata"]["resourceVersion"]}))
        return json_response(obj)

    def list(self, req: Request, t: Target) -> Response:
        rt = t.rt
        predicate, node_name = _list_filter(req, rt)
        items, rv = self.store.list(rt, t.namespace, predicate, node_name=node_name)
        meta: Obj = {"resourceVersion": str(rv)}
        token = req.param("continue")
        if token:
            start = _decode_continue(token)
            items = [o for o in items if _key(o) > start]
        limit = _int_param(req, "limit")
        if limit and limit > 0 and len(items) > limit:
            meta["continue"] = _encode_continue(rv, _key(items[limit - 1]))
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if tables.wants_table(req.header("accept")):
            return json_response(tables.table(rt, items, include_object=req.param("includeObject") or "Metadata",
                                              list_meta=meta))
        return json_response({"kind": f"{rt.kind}List", "apiVersion": rt.group_version, "metadata": meta,
                              "items": items})

    def watch(self, req: Request, t: Target) -> WatchStream:
        rt = t.rt
        predicate, _ = _list_filter(req, rt)
        since = _int_param(req, "resourceVersion")
        timeout = _int_param(req, "timeoutSeconds")
        timeout_s = float(timeout) if timeout and timeout > 0 else DEFAULT_TIMEOUT_S
        render = _renderer(req, rt)
        try:
            w = self.store.watch(rt, t.namespace, predicate, since=since or None)
        except ApiError as e:
            if e.code != 410:
                raise
            return WatchStream(self.store, None, timeout_s, render, error=expired(e.message))
        return WatchStream(self.store, w, timeout_s, render)

    # ---- writes ------------------------------------------------------------------------------

    def create(self, req: Request, t: Target) -> Response:
        rt = t.rt
        if t.name is not None:
            raise ApiError(405, "MethodNotAllowed", f"POST is not supported on a named {rt.kind}")
        obj = _body_object(req, rt)
        _check_namespace(rt, t, obj)
        defaults.validate_name(rt, obj)
        defaults.prepare_for_create(rt, obj)
        created = self.store.create(rt, obj, dry_run=dry_run(req))
        return json_response(created, 201)

    def update(self, req: Request, t: Target) -> Response:
        rt = t.rt
        if t.name is None:
            raise ApiError(405, "MethodNotAllowed", f"PUT is not supported on a {rt.kind} collection")
        if t.subresource == "scale":
            return self._update_scale(req, t)
        if t.subresource not in (None, "status"):
            raise ApiError(405, "MethodNotAllowed", f"PUT is not supported on {rt.plural}/{t.subresource}")
        obj = _body_object(req, rt)
        _check_namespace(rt, t, obj)
        name = obj["metadata"].setdefault("name", t.name)
        if name != t.name:
            raise bad_request(f"the name of the object ({name}) does not match the name on the URL ({t.name})")
        stored = self.store.replace(rt, obj, subresource=t.subresource, dry_run=dry_run(req))
        return json_response(stored)

    def patch(self, req: Request, t: Target) -> Response:
        rt = t.rt
        if t.name is None:
            raise ApiError(405, "MethodNotAllowed", f"PATCH is not supported on a {rt.kind} collection")
        content_type = req.content_type
        if content_type == APPLY_PATCH:
            raise ApiError(415, "UnsupportedMediaType",
                           "the twin does not implement server-side apply (application/apply-patch+yaml); "
                           "use a strategic merge, JSON merge or JSON patch")
        if content_type not in PATCH_TYPES:
            raise ApiError(415, "UnsupportedMediaType",
                           f'the body of the request was in an unknown format - accepted media types include: '
                           f'{", ".join(PATCH_TYPES)}')
        patch = req.json_body()
        if t.subresource == "scale":
            return self._patch_scale(req, t, content_type, patch)
        if t.subresource not in (None, "status"):
            raise ApiError(405, "MethodNotAllowed", f"PATCH is not supported on {rt.plural}/{t.subresource}")

        def change(draft: Obj) -> Obj:
            current_rv = draft["metadata"].get("resourceVersion")
            try:
                patched = apply_patch(content_type, draft, patch)
            except PatchError as e:
                raise ApiError(e.code, "Invalid" if e.code == 422 else "BadRequest", str(e)) from e
            meta = patched.get("metadata")
            if not isinstance(meta, dict):
                raise ApiError(422, "Invalid", f'{rt.kind} "{t.name}" is invalid: metadata: Required value')
            if meta.get("resourceVersion") not in (None, current_rv):
                raise _conflict(rt, t.name or "")
            meta["resourceVersion"] = current_rv
            return patched

        stored = self.store.mutate(rt, t.namespace, t.name, change,
                                   subresource="status" if t.subresource == "status" else None,
                                   dry_run=dry_run(req))
        return json_response(stored)

    def delete(self, req: Request, t: Target) -> Response:
        rt = t.rt
        options = req.json_body() or {}
        if not isinstance(options, dict):
            raise bad_request("DeleteOptions must be an object")
        if t.name is None:
            return self._delete_collection(req, t, options)
        if t.subresource is not None:
            raise ApiError(405, "MethodNotAllowed", f"DELETE is not supported on {rt.plural}/{t.subresource}")
        gone = self._delete_one(req, rt, t.namespace, t.name, options)
        if rt.key in RETURNS_DELETED_OBJECT:
            return json_response(gone)
        meta = gone["metadata"]
        return json_response(success_status(200, {"name": meta["name"], "group": rt.group, "kind": rt.plural,
                                                   "uid": meta.get("uid")}))

    def _delete_one(self, req: Request, rt: ResourceType, namespace: str | None, name: str,
                    options: Obj) -> Obj:
        preconditions = options.get("preconditions") or {}
        propagation = req.param("propagationPolicy") or options.get("propagationPolicy") or "Background"
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise bad_request(f"invalid propagationPolicy {propagation!r}")
        if options.get("orphanDependents") is True:
            propagation = "Orphan"
        _int_param(req, "gracePeriodSeconds")
        with self.store.lock:
            if preconditions.get("resourceVersion"):
                current = self.store.must_get(rt, namespace, name)
                if current["metadata"]["resourceVersion"] != preconditions["resourceVersion"]:
                    raise _conflict(rt, name)
            return self.store.delete(rt, namespace, name, dry_run=dry_run(req, options),
                                     propagation=propagation, uid=preconditions.get("uid"))

    def _delete_collection(self, req: Request, t: Target, options: Obj) -> Response:
        rt = t.rt
        predicate, node_name = _list_filter(req, rt)
        items, rv = self.store.list(rt, t.namespace, predicate, node_name=node_name)
        gone = []
        for obj in items:
            meta = obj["metadata"]
            try:
                gone.append(self._delete_one(req, rt, meta.get("namespace"), meta["name"], options))
            except ApiError as e:
                if e.code != 404:
                    raise
        return json_response({"kind": f"{rt.kind}List", "apiVersion": rt.group_version,
                              "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": gone})

    # ---- scale -------------------------------------------------------------------------------

    def _set_replicas(self, req: Request, t: Target, replicas: Any, expected_rv: str | None) -> Response:
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(422, "Invalid", f'Scale.autoscaling "{t.name}" is invalid: spec.replicas: '
                                           f"Invalid value: {replicas!r}: must be greater than or equal to 0")

        def change(draft: Obj) -> None:
            if expected_rv and draft["metadata"]["resourceVersion"] != expected_rv:
                raise _conflict(t.rt, t.name or "")
            draft.setdefault("spec", {})["replicas"] = replicas

        stored = self.store.mutate(t.rt, t.namespace, t.name or "", change, dry_run=dry_run(req))
        return json_response(scale_of(stored))

    def _update_scale(self, req: Request, t: Target) -> Response:
        body = req.json_body()
        if not isinstance(body, dict):
            raise bad_request("the body must be a Scale object")
        replicas = (body.get("spec") or {}).get("replicas", 0)
        return self._set_replicas(req, t, replicas, (body.get("metadata") or {}).get("resourceVersion"))

    def _patch_scale(self, req: Request, t: Target, content_type: str, patch: Any) -> Response:
        current = scale_of(self.store.must_get(t.rt, t.namespace, t.name or ""))
        try:
            patched = apply_patch(content_type, current, patch)
        except PatchError as e:
            raise ApiError(e.code, "Invalid" if e.code == 422 else "BadRequest", str(e)) from e
        rv = (patched.get("metadata") or {}).get("resourceVersion")
        expected = rv if rv != current["metadata"]["resourceVersion"] else None
        if expected:
            raise _conflict(t.rt, t.name or "")
        return self._set_replicas(req, t, (patched.get("spec") or {}).get("replicas", 0), None)


def scale_of(obj: Obj) -> Obj:
    """The autoscaling/v1 Scale view of a Deployment or ReplicaSet."""
    meta = obj["metadata"]
    selector = ((obj.get("spec") or {}).get("selector") or {})
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                   "selector": tables._selector_string(selector).replace("<none>", "")},
    }


def _conflict(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rt.plural}{"." + rt.group if rt.group else ""} '
                                     f'"{name}": the object has been modified; please apply your changes to the '
                                     "latest version and try again",
                    {"name": name, "group": rt.group, "kind": rt.plural})


def _body_object(req: Request, rt: ResourceType) -> Obj:
    obj = req.json_body()
    if not isinstance(obj, dict):
        raise bad_request("the body of the request must be a JSON object")
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version and api_version != rt.group_version:
        raise bad_request(f"the API version in the data ({api_version}) does not match the expected API "
                          f"version ({rt.group_version})")
    if kind and kind != rt.kind:
        raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
    if not isinstance(obj.setdefault("metadata", {}), dict):
        raise bad_request("metadata must be an object")
    return obj


def _check_namespace(rt: ResourceType, t: Target, obj: Obj) -> None:
    meta = obj["metadata"]
    if not rt.namespaced:
        return
    if meta.get("namespace") and meta["namespace"] != t.namespace:
        raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
    meta["namespace"] = t.namespace


def _renderer(req: Request, rt: ResourceType) -> Any:
    if not tables.wants_table(req.header("accept")):
        return lambda obj: obj
    include = req.param("includeObject") or "Metadata"
    return lambda obj: tables.table(rt, [obj], include_object=include,
                                    list_meta={"resourceVersion": obj["metadata"].get("resourceVersion", "")})
