"""The PATCH content types: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.

Strategic merge follows the API types' patch strategies for the lists that matter here: lists of
objects merge by their merge key (containers by name, conditions by type, ...), lists without a
strategy (tolerations, taints, nodeSelectorTerms, ...) are replaced, and ``finalizers`` merge as a
set. Directives ``$patch`` (delete / replace / merge), ``$retainKeys``,
``$deleteFromPrimitiveList/<field>`` are honoured; ``$setElementOrder/<field>`` is accepted and ignored.
A ``null`` value deletes the key. Functions raise ``PatchError`` for a patch the server rejects.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)

# Merge keys by field name (the patchMergeKey tags of the core types). Lists not named here are replaced.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "schedulingGates": "name",
    "addresses": "type",
}
# `ports` merges by containerPort in a container and by port in a Service.
_PORT_KEYS = ("containerPort", "port")
# Lists of scalars merged as sets.
PRIMITIVE_MERGE_LISTS = frozenset({"finalizers"})


class PatchError(ValueError):
    """A patch that cannot be applied; ``code`` is the HTTP status the server answers."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


def apply_patch(content_type: str, target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply ``patch`` of the given content type to a copy of ``target``."""
    if content_type == JSON_PATCH:
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise PatchError("a merge patch must be a JSON object")
    if content_type == MERGE_PATCH:
        return merge_patch(target, patch)
    if content_type == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(target, patch)
    raise PatchError(f"unsupported patch type {content_type}", 415)


def json_patch(target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """RFC 6902 JSON patch; a failed ``test`` or missing path is 422, a malformed patch 400."""
    if not isinstance(patch, list):
        raise PatchError("a JSON patch must be a list of operations")
    try:
        result = jsonpatch.JsonPatch(patch).apply(target, in_place=False)
    except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchTestFailed, jsonpointer.JsonPointerException) as e:
        raise PatchError(f"the server rejected our request due to an error in our request: {e}", 422) from e
    except (jsonpatch.InvalidJsonPatch, TypeError, KeyError) as e:
        raise PatchError(f"invalid JSON patch: {e}") from e
    if not isinstance(result, dict):
        raise PatchError("a JSON patch must leave an object")
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Kubernetes strategic merge patch for the built-in types the twin serves."""
    return _merge_map(target, patch)


def _merge_map(target: Any, patch: dict[str, Any]) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    rest = {k: v for k, v in patch.items() if k != "$patch"}
    if directive == "replace":
        return _strip_directives(rest)
    if directive not in (None, "merge"):
        raise PatchError(f"unknown patch directive {directive!r}")
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    retain = rest.pop("$retainKeys", None)
    for key, value in rest.items():
        if key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = value
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError("$retainKeys must be a list")
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        for key in _PORT_KEYS:
            if any(isinstance(i, dict) and key in i for i in items):
                return key
        return None
    return MERGE_KEYS.get(field)


def _merge_list(field: str, target: Any, patch: list[Any]) -> list[Any]:
    current: list[Any] = list(target) if isinstance(target, list) else []
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip_directives(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if field in PRIMITIVE_MERGE_LISTS and all(not isinstance(i, dict | list) for i in patch):
        return current + [v for v in patch if v not in current]
    key = _merge_key(field, patch + current)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return [_strip_directives(i) for i in patch]
    result = list(current)
    for item in patch:
        if key not in item:
            raise PatchError(f"map in {field} does not contain declared merge key: {key}")
        index = next((n for n, c in enumerate(result) if isinstance(c, dict) and c.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
            continue
        if index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = _merge_map(result[index], item)
    return result


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value
