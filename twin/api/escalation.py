"""RBAC escalation prevention: what kube-apiserver's RBAC storage refuses a restricted user.

Rules (``k8s.io/kubernetes/pkg/registry/rbac/{role,clusterrole,rolebinding,clusterrolebinding}/policybased``):
- Only creates (POST) and updates (PUT; PATCH judged on the object as patched) of the four RBAC kinds are
  checked, dry runs included. The admin is never checked (its requests never come here).
- A Role or ClusterRole is allowed when the user holds ``escalate`` on it (``roles``/``clusterroles`` in
  rbac.authorization.k8s.io, asked with the URL's name: a name-restricted rule allows updates, never a
  create), or already holds every permission it grants (``twin.rbac.uncovered``): a ClusterRole's
  cluster-wide, a Role's in its namespace, where cluster-wide rules count too. A ClusterRole with an
  aggregationRule (before or after) further needs ``*`` on everything.
- A RoleBinding or ClusterRoleBinding is allowed when the user holds ``bind`` on the role it references
  (``roles``/``clusterroles`` named after it; in the binding's namespace, cluster-wide for a
  ClusterRoleBinding), or holds every permission of that role, read from the store: a RoleBinding's
  ClusterRole grants its rules in the binding's namespace only. A role that does not exist is 404.
- An update that only changes what the garbage collector uses (ownerReferences, finalizers) is allowed.
- What every authenticated user holds (discovery) counts as held.
- Refusals are 403 Forbidden: ``<resource>.rbac.authorization.k8s.io "<name>" is forbidden: user "<u>"
  (groups=[...]) is attempting to grant RBAC permissions not currently held:`` and the missing
  permissions, one a line (``twin.rbac.escalation_message``); for an aggregationRule, ``must have
  cluster-admin privileges to use the aggregationRule``.
- ``bind`` and ``escalate`` are asked of the user's authorizer directly, so they never show in the request
  log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twin.api.messages import Request
from twin.api.patching import PATCH_TYPES, PatchError, apply_patch
from twin.api.routing import Target
from twin.rbac import (
    AUTHENTICATED_DEFAULTS,
    FULL_AUTHORITY,
    Attributes,
    RequestAttributes,
    Rule,
    escalation_message,
    uncovered,
)
from twin.resources import BY_KEY
from twin.store import ApiError, Obj, Store

RBAC_GROUP = "rbac.authorization.k8s.io"
ROLE_RESOURCES = frozenset({"roles", "clusterroles"})
BINDING_RESOURCES = frozenset({"rolebindings", "clusterrolebindings"})
ROLE_KINDS = {"Role": "roles", "ClusterRole": "clusterroles"}
AGGREGATION_MESSAGE = "must have cluster-admin privileges to use the aggregationRule"
# metadata the garbage collector or the server sets: an update changing only these grants nothing
_IGNORED_METADATA = frozenset({"ownerReferences", "finalizers", "selfLink", "deletionTimestamp",
                               "deletionGracePeriodSeconds", "uid", "resourceVersion", "creationTimestamp",
                               "generation", "managedFields"})

Authorize = Callable[[RequestAttributes], bool]


def check_escalation(store: Store, req: Request, target: Target, authorize: Authorize,
                     rules: Iterable[Rule]) -> None:
    """Raise the API server's 403 (or 404 for a missing role) when serving ``req`` would let its user grant
    permissions it does not hold; return when it would not, or when the request is not an RBAC write."""
    rt = target.rt
    if (rt.group != RBAC_GROUP or target.subresource or req.method not in ("POST", "PUT", "PATCH")
            or rt.plural not in ROLE_RESOURCES | BINDING_RESOURCES):
        return
    new, old = _written_and_stored(store, req, target)
    if new is None or (old is not None and _only_gc_fields_change(new, old)):
        return  # serving answers (400, 404, 422 ...), or the write grants nothing
    held = (*rules, *AUTHENTICATED_DEFAULTS)
    namespace = target.namespace or ""
    name = str((new.get("metadata") or {}).get("name") or target.name or "")
    if rt.plural in ROLE_RESOURCES:
        _check_role(rt.plural, namespace, target.name or "", name, new, old, req.user, authorize, held)
    else:
        _check_binding(store, rt.plural, namespace, name, new, req.user, authorize, held)


def _check_role(resource: str, namespace: str, url_name: str, name: str, new: Obj, old: Obj | None,
                user: str, authorize: Authorize, held: tuple[Rule, ...]) -> None:
    """``escalate`` on the role, or every permission it grants (and full authority for aggregation)."""
    if authorize(Attributes("escalate", RBAC_GROUP, resource, namespace=namespace, name=url_name)):
        return
    missing = uncovered(held, rules_of(new, namespace))
    if missing:
        raise forbidden(resource, name, escalation_message(user, missing))
    aggregates = any(_aggregates(obj) for obj in (new, old) if obj is not None)
    if resource == "clusterroles" and aggregates and uncovered(held, FULL_AUTHORITY):
        raise forbidden(resource, name, AGGREGATION_MESSAGE)


def _check_binding(store: Store, resource: str, namespace: str, name: str, new: Obj, user: str,
                   authorize: Authorize, held: tuple[Rule, ...]) -> None:
    """``bind`` on the referenced role, or every permission of that role in the binding's scope."""
    ref = _mapping(new.get("roleRef"))
    role_resource = ROLE_KINDS.get(str(ref.get("kind")))
    if role_resource is None:
        return  # not a role reference the API server would accept: serving's business
    role_name = str(ref.get("name") or "")
    group = str(ref.get("apiGroup") or RBAC_GROUP)
    if authorize(Attributes("bind", group, role_resource, namespace=namespace, name=role_name)):
        return
    role = store.get(BY_KEY[f"{role_resource}.{RBAC_GROUP}"], namespace or None, role_name)
    if role is None:
        raise ApiError(404, "NotFound", f'{role_resource}.{RBAC_GROUP} "{role_name}" not found',
                       {"name": role_name, "group": RBAC_GROUP, "kind": role_resource})
    missing = uncovered(held, rules_of(role, namespace))
    if missing:
        raise forbidden(resource, name, escalation_message(user, missing))


def rules_of(role: Obj, namespace: str) -> list[Rule]:
    """A role's rules as granted in ``namespace`` ("" for cluster-wide)."""
    return [Rule.from_dict(r, namespace) for r in role.get("rules") or () if isinstance(r, dict)]


def forbidden(resource: str, name: str, reason: str) -> ApiError:
    """Kubernetes' ``NewForbidden`` for an RBAC resource."""
    subject = f'{resource}.{RBAC_GROUP} "{name}"' if name else f"{resource}.{RBAC_GROUP}"
    details: dict[str, Any] = {"group": RBAC_GROUP, "kind": resource}
    if name:
        details["name"] = name
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {reason}", details)


def _written_and_stored(store: Store, req: Request, target: Target) -> tuple[Obj | None, Obj | None]:
    """The object the request would store (PATCH: the stored one patched) and the one stored now."""
    stored = store.get(target.rt, target.namespace, target.name) if target.name else None
    if req.method == "PATCH":
        if stored is None or req.content_type not in PATCH_TYPES:
            return None, None
        try:
            return apply_patch(req.content_type, stored, req.json_body()), stored
        except PatchError:
            return None, None
    body = req.json_body()
    return (body if isinstance(body, dict) else None), stored


def _only_gc_fields_change(new: Obj, old: Obj) -> bool:
    return _comparable(new) == _comparable(old)


def _comparable(obj: Obj) -> Obj:
    meta = _mapping(obj.get("metadata"))
    kept = {k: v for k, v in meta.items() if k not in _IGNORED_METADATA and v not in (None, {}, [])}
    body = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind") and v not in (None, [])}
    return {"metadata": kept, **body}


def _aggregates(role: Obj) -> bool:
    return bool(_mapping(role.get("aggregationRule")).get("clusterRoleSelectors"))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
