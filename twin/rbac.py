"""RBAC as Kubernetes' authorizer decides it: do the roles bound to a subject allow a request?

A ``Policy`` is what one YAML file binds to one subject: the rules of its ClusterRoles (through
ClusterRoleBindings: every namespace) and of its Roles (through RoleBindings: that namespace only).

Rules (Kubernetes' semantics):
- A request is allowed when any rule of the policy matches it, or any rule every authenticated user holds
  in a real cluster (``system:discovery``, ``system:public-info-viewer``: GET on ``/api``, ``/apis``,
  ``/version``, ``/healthz``...).
- A resource rule matches when its apiGroups, resources and verbs each contain the request's value or
  ``*``. A subresource is named with its resource (``pods/eviction``, ``services/proxy``) and is never
  implied by the resource (``pods`` does not allow ``pods/eviction``); ``*/scale`` names that subresource
  of every resource. ``resourceNames``, when given, must contain the request's name, so a request
  without one (list, watch, create, deletecollection) never matches such a rule.
- A non-resource rule matches a request without a resource whose path is one of its nonResourceURLs; a
  trailing ``*`` matches by prefix.
- ``bind``, ``escalate`` and ``impersonate`` are never a request's verb: the API server checks them while
  serving another request (creating a role binding or a role), so no request log shows them.

Escalation prevention (the comparison kube-apiserver's RBAC storage makes, ``twin.api.escalation`` applies it):
- ``uncovered(owner, rules)``: each rule is broken down into one verb x group x resource (x name), or one
  verb x URL; a piece is covered by an owner rule whose verbs, groups, resources hold it (``*`` covers
  everything, ``*/sub`` every resource's ``sub``, a ``*`` piece only ``*``), whose resourceNames are none
  or hold its name (a nameless piece needs a nameless owner rule), whose URLs equal it or end with ``*``
  and prefix it, and, for a Role's rule, whose namespace is the piece's (a ClusterRole's rule covers
  every namespace; a cluster-wide piece needs a cluster-wide rule).
- ``escalation_message`` words the refusal as kube-apiserver does: the missing pieces compacted (verbs
  of one group/resource/name merged), rendered ``{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}``
  (Go's ``%q``), one a line, sorted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

AUTHORIZATION_ONLY_VERBS = frozenset({"bind", "escalate", "impersonate"})


class RequestAttributes(Protocol):
    """What an authorizer sees of a request (``twin.apiserver.RequestRecord`` has these)."""

    @property
    def verb(self) -> str: ...
    @property
    def api_group(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def subresource(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...


def resource_of(request: RequestAttributes) -> str:
    """``pods`` or ``pods/eviction``: the resource as rules name it."""
    return f"{request.resource}/{request.subresource}" if request.subresource else request.resource


@dataclass(frozen=True)
class Permission:
    """One verb on one resource (optionally one name, one namespace), or one verb on one non-resource URL."""

    verb: str
    api_group: str = ""
    resource: str = ""
    resource_name: str = ""
    non_resource_url: str = ""
    namespace: str = ""  # "" for every namespace

    def __str__(self) -> str:
        if self.non_resource_url:
            return f"{self.verb} {self.non_resource_url}"
        group = self.api_group or "core"
        named = f" {self.resource_name!r}" if self.resource_name else ""
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {group}/{self.resource}{named}{where}"


@dataclass(frozen=True)
class Rule:
    """A PolicyRule."""

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    namespace: str = ""  # a Role's rule holds in its namespace only

    @classmethod
    def from_dict(cls, rule: Mapping[str, Any], namespace: str = "") -> Rule:
        def strings(key: str) -> tuple[str, ...]:
            return tuple(str(v) for v in rule.get(key) or ())

        return cls(strings("verbs"), strings("apiGroups"), strings("resources"), strings("resourceNames"),
                   strings("nonResourceURLs"), namespace)

    def matches(self, request: RequestAttributes) -> bool:
        if not _contains(self.verbs, request.verb):
            return False
        if self.namespace and request.namespace != self.namespace:
            return False
        if not request.resource:
            return any(_url_matches(url, request.path) for url in self.non_resource_urls)
        return (_contains(self.api_groups, request.api_group)
                and any(_resource_matches(r, request.resource, request.subresource) for r in self.resources)
                and (not self.resource_names or request.name in self.resource_names))

    def permissions(self) -> Iterator[Permission]:
        """Every verb x group x resource (x name) the rule grants, as written (wildcards stay ``*``)."""
        for verb in self.verbs:
            for url in self.non_resource_urls:
                yield Permission(verb, non_resource_url=url)
            for group in self.api_groups:
                for resource in self.resources:
                    for name in self.resource_names or ("",):
                        yield Permission(verb, group, resource, name, namespace=self.namespace)


@dataclass(frozen=True)
class Subject:
    kind: str  # User, Group or ServiceAccount
    name: str
    namespace: str = ""

    @property
    def username(self) -> str:
        """The name the API server authenticates this subject as."""
        if self.kind == "ServiceAccount":
            return f"system:serviceaccount:{self.namespace}:{self.name}"
        return self.name


@dataclass(frozen=True)
class Policy:
    """The rules bound to a subject (a Role's rules carry its namespace)."""

    rules: tuple[Rule, ...]
    subjects: tuple[Subject, ...] = ()

    def allows(self, request: RequestAttributes) -> bool:
        """Whether the policy, or what every authenticated user may do, allows the request."""
        return any(rule.matches(request) for rule in (*self.rules, *AUTHENTICATED_DEFAULTS))

    def permissions(self) -> list[Permission]:
        return [p for rule in self.rules for p in rule.permissions()]

    @property
    def username(self) -> str:
        """The bound subject's user name (the identity a twin's RBAC token authenticates as)."""
        return self.subjects[0].username


# system:discovery, system:public-info-viewer and system:basic-user, as bound to system:authenticated
AUTHENTICATED_DEFAULTS: tuple[Rule, ...] = (
    Rule(("get",), non_resource_urls=("/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*",
                                      "/version", "/version/", "/healthz", "/livez", "/readyz")),
    Rule(("create",), ("authorization.k8s.io",), ("selfsubjectaccessreviews", "selfsubjectrulesreviews")),
)


def permission_matches(permission: Permission, request: RequestAttributes) -> bool:
    """Whether this one permission (with its name and namespace, if any) allows the request."""
    rule = Rule((permission.verb,), (permission.api_group,), (permission.resource,) if permission.resource else (),
                (permission.resource_name,) if permission.resource_name else (),
                (permission.non_resource_url,) if permission.non_resource_url else (), permission.namespace)
    return rule.matches(request)


def covers(role: Policy, rules: Iterable[Rule]) -> bool:
    """Whether ``role`` grants every permission of ``rules``: the API server's check that creating a role
    with these rules, or binding one, escalates nothing (otherwise ``escalate`` / ``bind`` is needed).
    A wildcard in ``rules`` is covered only by the same wildcard."""
    return not uncovered(role.rules, rules)


def breakdown(rule: Rule) -> list[Rule]:
    """The rule as pieces of one verb x group x resource (x name), then one verb x URL (Kubernetes' order)."""
    pieces = [Rule((verb,), (group,), (resource,), (name,) if name else (), (), rule.namespace)
              for group in rule.api_groups for resource in rule.resources for verb in rule.verbs
              for name in rule.resource_names or ("",)]
    pieces += [Rule((verb,), non_resource_urls=(url,), namespace=rule.namespace)
               for url in rule.non_resource_urls for verb in rule.verbs]
    return pieces


def rule_covers(owner: Rule, piece: Rule) -> bool:
    """Whether ``owner`` covers ``piece`` (one of ``breakdown``'s), as Kubernetes' ``ruleCovers`` decides."""
    if owner.namespace and owner.namespace != piece.namespace:
        return False
    names_covered = (not owner.resource_names
                     or bool(piece.resource_names) and set(piece.resource_names) <= set(owner.resource_names))
    return (_has_all(owner.verbs, piece.verbs) and _has_all(owner.api_groups, piece.api_groups)
            and all(_resource_covered(owner.resources, r) for r in piece.resources)
            and all(any(_url_covers(o, url) for o in owner.non_resource_urls) for url in piece.non_resource_urls)
            and names_covered)


def uncovered(owner: Iterable[Rule], rules: Iterable[Rule]) -> list[Rule]:
    """The pieces of ``rules`` no rule of ``owner`` covers (empty: granting ``rules`` escalates nothing)."""
    held = list(owner)
    return [piece for rule in rules for piece in breakdown(rule) if not any(rule_covers(o, piece) for o in held)]


def compact(pieces: Iterable[Rule]) -> list[Rule]:
    """Pieces of one group, one resource and at most one name merged into one rule with all their verbs."""
    merged: dict[tuple[str, str, tuple[str, ...]], Rule] = {}
    others: list[Rule] = []
    for piece in pieces:
        if piece.non_resource_urls or len(piece.api_groups) != 1 or len(piece.resources) != 1 \
                or len(piece.resource_names) > 1:
            others.append(piece)
            continue
        key = (piece.api_groups[0], piece.resources[0], piece.resource_names)
        seen = merged.get(key)
        merged[key] = piece if seen is None else Rule(seen.verbs + piece.verbs, seen.api_groups, seen.resources,
                                                      seen.resource_names, (), seen.namespace)
    return others + list(merged.values())


def compact_string(rule: Rule) -> str:
    """``{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}``: Kubernetes' ``CompactString``."""
    fields = (("APIGroups", rule.api_groups), ("Resources", rule.resources),
              ("NonResourceURLs", rule.non_resource_urls), ("ResourceNames", rule.resource_names),
              ("Verbs", rule.verbs))
    return "{" + ", ".join(f"{name}:{go_quote_list(values)}" for name, values in fields if values) + "}"


def go_quote_list(values: Iterable[str]) -> str:
    """A string slice as Go's ``%q`` prints it: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def groups_of(user: str) -> tuple[str, ...]:
    """The groups the API server puts a token-authenticated user in (service accounts get theirs too)."""
    if user.startswith("system:serviceaccount:"):
        namespace = user.split(":")[2]
        return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated")
    return ("system:authenticated",)


def escalation_message(user: str, missing: Iterable[Rule]) -> str:
    """Why granting ``missing`` is refused, word for word (the part after ``... is forbidden: ``)."""
    lines = sorted({compact_string(rule) for rule in compact(missing)})
    return (f"user {json.dumps(user)} (groups={go_quote_list(groups_of(user))}) is attempting to grant RBAC "
            "permissions not currently held:\n" + "\n".join(lines))


# What setting a ClusterRole's aggregationRule needs (it can gather anything): kube-apiserver's fullAuthority.
FULL_AUTHORITY: tuple[Rule, ...] = (Rule(("*",), ("*",), ("*",)), Rule(("*",), non_resource_urls=("*",)))


@dataclass(frozen=True)
class Attributes:
    """A request as an authorizer sees it, made up by the API server (``bind``/``escalate`` checks)."""

    verb: str
    api_group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


def load_policy(path: str | Path) -> Policy:
    """The rules a YAML file's bindings give their one subject."""
    return policy_from(d for d in yaml.safe_load_all(Path(path).read_text()) if d)


def policy_from(docs: Iterable[Mapping[str, Any]]) -> Policy:
    """Roles and ClusterRoles, bound by RoleBindings and ClusterRoleBindings, all to the same subject."""
    docs = list(docs)
    roles = {(d["kind"], (d["metadata"].get("namespace") or "") if d["kind"] == "Role" else "",
              d["metadata"]["name"]): d for d in docs if d.get("kind") in ("Role", "ClusterRole")}
    rules: list[Rule] = []
    subjects: set[Subject] = set()
    for binding in (d for d in docs if d.get("kind") in ("RoleBinding", "ClusterRoleBinding")):
        namespace = (binding["metadata"].get("namespace") or "") if binding["kind"] == "RoleBinding" else ""
        ref = binding["roleRef"]
        role = roles.get((ref["kind"], namespace if ref["kind"] == "Role" else "", ref["name"]))
        if role is None:
            raise ValueError(f"{binding['kind']} {binding['metadata']['name']!r} binds {ref['kind']} "
                             f"{ref['name']!r}, which the file does not define")
        rules += [Rule.from_dict(r, namespace) for r in role.get("rules") or ()]
        subjects |= {Subject(str(s["kind"]), str(s["name"]), str(s.get("namespace") or ""))
                     for s in binding.get("subjects") or ()}
    if len(subjects) != 1:
        raise ValueError(f"expected the bindings to name one subject, found {sorted(map(str, subjects))}")
    return Policy(tuple(rules), tuple(subjects))


def forbidden_message(request: RequestAttributes, user: str) -> str:
    """The message of the API server's 403 Status, word for word."""
    if not request.resource:
        return f'forbidden: User "{user}" cannot {request.verb} path "{request.path}"'
    group_resource = f"{request.resource}.{request.api_group}" if request.api_group else request.resource
    subject = f'{group_resource} "{request.name}"' if request.name else group_resource
    where = (f'in the namespace "{request.namespace}"' if request.namespace else "at the cluster scope")
    return (f'{subject} is forbidden: User "{user}" cannot {request.verb} resource "{resource_of(request)}" '
            f'in API group "{request.api_group}" {where}')


def _contains(values: tuple[str, ...], value: str) -> bool:
    return "*" in values or value in values


def _has_all(owner: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    return "*" in owner or set(wanted) <= set(owner)


def _resource_covered(owner: tuple[str, ...], resource: str) -> bool:
    if "*" in owner or resource in owner:
        return True
    _, slash, subresource = resource.partition("/")
    return bool(slash) and f"*/{subresource}" in owner


def _url_covers(owner: str, url: str) -> bool:
    return owner == url or owner.endswith("*") and url.startswith(owner.rstrip("*"))


def _resource_matches(rule_resource: str, resource: str, subresource: str) -> bool:
    if rule_resource == "*":
        return True
    if not subresource:
        return rule_resource == resource
    return rule_resource in (f"{resource}/{subresource}", f"*/{subresource}")


def _url_matches(rule_url: str, path: str) -> bool:
    if rule_url == "*" or rule_url == path:
        return True
    return rule_url.endswith("*") and path.startswith(rule_url[:-1])
