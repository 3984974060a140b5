"""Label selectors, field selectors and node-affinity terms, with Kubernetes' matching rules.

A selector string that does not parse raises ``SelectorError`` (the API server answers 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A label or field selector that Kubernetes would reject."""


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector: key, operator and values."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        raise SelectorError(f"unknown operator {self.op}")


LabelSelector = tuple[Requirement, ...]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


def _split_clauses(selector: str) -> list[str]:
    """Split on commas that are not inside a parenthesised value set."""
    clauses: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            clauses.append("".join(current))
            current = []
        else:
            current.append(ch)
    clauses.append("".join(current))
    return [c for c in clauses if c.strip()]


def parse_label_selector(selector: str | None) -> LabelSelector:
    """Parse the string form (`a=b,c!=d,e in (f,g),h notin (i),j,!k`)."""
    if not selector:
        return ()
    reqs: list[Requirement] = []
    for clause in _split_clauses(selector):
        if m := _SET_RE.match(clause):
            values = tuple(v.strip() for v in m.group(4).split(",") if v.strip())
            reqs.append(Requirement(m.group(1), m.group(3), values))
        elif m := _EQ_RE.match(clause):
            op = "!=" if m.group(3) == "!=" else "="
            reqs.append(Requirement(m.group(1), op, (m.group(4),)))
        elif m := _EXISTS_RE.match(clause):
            reqs.append(Requirement(m.group(2), "!" if m.group(1) else "exists"))
        else:
            raise SelectorError(f"unable to parse requirement: {clause.strip()!r}")
    return tuple(reqs)


def selector_from_dict(selector: Mapping[str, Any] | None) -> LabelSelector:
    """Convert a metav1.LabelSelector (matchLabels / matchExpressions) to requirements.

    An empty or missing selector matches everything, as in Kubernetes.
    """
    if not selector:
        return ()
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(expr.get("operator", ""))
        if op is None:
            raise SelectorError(f"invalid operator {expr.get('operator')!r}")
        reqs.append(Requirement(expr["key"], op, tuple(expr.get("values") or ())))
    return tuple(reqs)


def labels_match(selector: LabelSelector, labels: Mapping[str, str] | None) -> bool:
    """True when every requirement holds for the labels."""
    labels = labels or {}
    return all(r.matches(labels) for r in selector)


def node_selector_term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """One NodeSelectorTerm: all matchExpressions (on labels) and matchFields (on metadata.name) hold."""
    labels = node.get("metadata", {}).get("labels") or {}
    for expr in term.get("matchExpressions") or []:
        if not _node_expression_matches(expr, labels.get(expr["key"]), expr["key"] in labels):
            return False
    for expr in term.get("matchFields") or []:
        name = node.get("metadata", {}).get("name")
        if not _node_expression_matches(expr, name, expr["key"] == "metadata.name"):
            return False
    return bool(term.get("matchExpressions") or term.get("matchFields"))


def _node_expression_matches(expr: Mapping[str, Any], value: str | None, present: bool) -> bool:
    op, values = expr.get("operator"), list(expr.get("values") or [])
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        try:
            left, right = int(value or ""), int(values[0])
        except (ValueError, IndexError):
            return False
        return left > right if op == "Gt" else left < right
    raise SelectorError(f"invalid node selector operator {op!r}")


def pod_fits_node_affinity(pod_spec: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """nodeSelector and required node affinity (terms are ORed), as the scheduler and DaemonSet controller use them."""
    labels = node.get("metadata", {}).get("labels") or {}
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (
        ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
        .get("requiredDuringSchedulingIgnoredDuringExecution")
    )
    if not required:
        return True
    terms = required.get("nodeSelectorTerms") or []
    return any(node_selector_term_matches(t, node) for t in terms)


def tolerates(tolerations: list[Mapping[str, Any]] | None, taint: Mapping[str, Any]) -> bool:
    """Whether any toleration tolerates the taint (key, value, effect; operator Exists or Equal)."""
    for t in tolerations or []:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        op = t.get("operator", "Equal")
        if not t.get("key"):
            if op == "Exists":
                return True
            continue
        if t.get("key") != taint.get("key"):
            continue
        if op == "Exists" or (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


# ---- field selectors ---------------------------------------------------------------------------

FieldSelector = tuple[tuple[str, str, str], ...]  # (path, op, value), op in {"=", "!="}

_FIELD_RE = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$")


def parse_field_selector(selector: str | None) -> FieldSelector:
    """Parse `spec.nodeName=n1,status.phase!=Running`."""
    if not selector:
        return ()
    out = []
    for clause in selector.split(","):
        if not clause.strip():
            continue
        m = _FIELD_RE.match(clause)
        if not m:
            raise SelectorError(f"invalid field selector: {clause!r}")
        out.append((m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
    return tuple(out)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string value of a dotted path; missing fields read as ''."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


SUPPORTED_FIELDS: dict[str, frozenset[str]] = {
    "pods": frozenset({"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase",
                       "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                       "status.podIP", "status.nominatedNodeName"}),
    "nodes": frozenset({"metadata.name", "spec.unschedulable"}),
    "events": frozenset({"metadata.name", "metadata.namespace", "involvedObject.kind",
                         "involvedObject.name", "involvedObject.namespace", "involvedObject.uid",
                         "reason", "type", "source"}),
    "secrets": frozenset({"metadata.name", "metadata.namespace", "type"}),
}
DEFAULT_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


def check_field_selector(resource_key: str, selector: FieldSelector) -> None:
    """Refuse fields the real API server does not index for this resource (it answers 400)."""
    allowed = SUPPORTED_FIELDS.get(resource_key, DEFAULT_FIELDS)
    for path, _, _ in selector:
        if path not in allowed:
            raise SelectorError(f'field label not supported: {path}')


def fields_match(selector: FieldSelector, obj: Mapping[str, Any]) -> bool:
    """True when every (path, op, value) clause holds."""
    for path, op, value in selector:
        actual = field_value(obj, path)
        if (actual == value) != (op == "="):
            return False
    return True


def compile_filter(label_selector: str | None, field_selector: str | None,
                   resource_key: str) -> Callable[[Mapping[str, Any]], bool]:
    """One predicate for both selectors; raises SelectorError on bad input."""
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector)
    check_field_selector(resource_key, fields)

    def predicate(obj: Mapping[str, Any]) -> bool:
        return labels_match(labels, obj.get("metadata", {}).get("labels")) and fields_match(fields, obj)

    return predicate
