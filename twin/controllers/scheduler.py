"""kube-scheduler: binds Pending pods to nodes.

Rules (the default profile's filters, in its order; a node fails on the first that rejects it):
- NodeUnschedulable: a cordoned node only takes pods tolerating ``node.kubernetes.io/unschedulable``.
- TaintToleration: every NoSchedule/NoExecute taint must be tolerated. A node whose Ready condition is
  not True counts as carrying ``node.kubernetes.io/not-ready:NoSchedule`` even before the node
  lifecycle controller adds it.
- NodeAffinity: ``nodeSelector`` and required node affinity.
- NodeResourcesFit: the node's allocatable ``pods``.
- InterPodAffinity, ``requiredDuringSchedulingIgnoredDuringExecution`` terms, against the pods bound to
  nodes (not finished, not being deleted):
  - A term selects the pods its ``labelSelector`` matches (none without one) in its namespaces:
    ``namespaces`` plus those ``namespaceSelector`` selects (``{}``: every namespace), or the pod's own
    namespace when it has neither. Nodes sharing a value of its ``topologyKey`` label form one domain.
  - podAffinity: the node carries every term's topology key and each term's domain there holds a pod
    matching all the terms, else "node(s) didn't match pod affinity rules". Except the first of a
    group: when no pod matches all the terms anywhere and the pod matches them itself, any node
    carrying the keys will do.
  - podAntiAffinity: no term's domain there holds a pod the term selects, else "node(s) didn't match
    pod anti-affinity rules".
  - Symmetry: no bound pod's anti-affinity term selects this pod within that term's domain there
    (its namespaceSelector is matched against this pod's namespace), else "node(s) didn't satisfy
    existing pods anti-affinity rules".
Among the nodes left, the least loaded (fewest pods) wins, then the name. Binding sets ``spec.nodeName``
and then ``PodScheduled=True``.

A pod that fits nowhere stays Pending with ``PodScheduled=False`` (reason Unschedulable) and the real
message, e.g. "0/3 nodes are available: 3 node(s) had untolerated taint {node.cilium.io/agent-not-ready:
true}. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling." (reasons as
"N reason", sorted; the twin never preempts, so nodes that failed on capacity or anti-affinity, where
preemption might help, count as "No preemption victims found for incoming pod"; with no nodes at all,
"no nodes available to schedule pods"). Each failed attempt is a Warning Event ``FailedScheduling`` from
``default-scheduler`` about the pod, in its namespace; a failure with the same message bumps that
Event's ``count`` and ``lastTimestamp`` instead of adding one.

A Pending pod is attempted again only when something the filters read has changed since its last
attempt: a node (added, removed, labels, taints, cordon, readiness, allocatable pods), a bound pod
(bound, gone, finished, relabelled), a namespace, or the pod itself (spec or labels).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twin.controllers.base import (
    NOT_READY_TAINT,
    UNSCHEDULABLE_TAINT,
    Controller,
    labels_of,
    node_ready,
    node_taints,
    pod_active,
    set_condition,
)
from twin.resources import EVENTS, NAMESPACES, NODES, PODS, ResourceType
from twin.selectors import (
    LabelSelector,
    SelectorError,
    labels_match,
    pod_fits_node_affinity,
    selector_from_dict,
    tolerates,
)
from twin.store import ApiError, Obj, now_iso

SCHEDULER_NAME = "default-scheduler"
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
TOO_MANY_PODS = "Too many pods"
AFFINITY_REASON = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY_REASON = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY_REASON = "node(s) didn't satisfy existing pods anti-affinity rules"
# Filters answering Unschedulable (preemption might help) rather than UnschedulableAndUnresolvable.
RESOLVABLE_REASONS = frozenset({TOO_MANY_PODS, ANTI_AFFINITY_REASON, EXISTING_ANTI_AFFINITY_REASON})
NO_NODES_MESSAGE = "no nodes available to schedule pods"
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"

Pair = tuple[str, str]  # a topology domain: (topology key, the nodes' value of it)
Placed = tuple[Obj, Obj]  # a bound pod and its node


def untolerated_taint(pod_spec: dict[str, Any], node: Obj) -> dict[str, Any] | None:
    """The first NoSchedule/NoExecute taint the pod does not tolerate (implicit not-ready included)."""
    taints = node_taints(node)
    if not node_ready(node) and not any(t.get("key") == NOT_READY_TAINT for t in taints):
        taints.append({"key": NOT_READY_TAINT, "effect": "NoSchedule"})
    for taint in taints:
        if taint.get("effect") in BLOCKING_EFFECTS and not tolerates(pod_spec.get("tolerations"), taint):
            return taint
    return None


# ---- InterPodAffinity ----------------------------------------------------------------------------

@dataclass(frozen=True)
class AffinityTerm:
    """A required PodAffinityTerm, resolved: the pods it selects and the label that groups nodes."""

    selector: LabelSelector | None  # None: no labelSelector, selects no pod
    namespaces: frozenset[str]
    namespace_selector: LabelSelector | None  # None: no namespaceSelector; (): every namespace
    topology_key: str

    def matches(self, pod: Obj, namespace_labels: Mapping[str, str] | None = None) -> bool:
        """Whether the term selects ``pod`` (whose namespace carries ``namespace_labels``)."""
        if self.selector is None:
            return False
        namespace = pod["metadata"].get("namespace") or ""
        in_scope = namespace in self.namespaces or (
            self.namespace_selector is not None and labels_match(self.namespace_selector, namespace_labels))
        return in_scope and labels_match(self.selector, labels_of(pod))

    def resolved(self, namespace_labels: Mapping[str, Mapping[str, str]]) -> AffinityTerm:
        """An incoming pod's term with its namespaceSelector unrolled into namespaces (``{}`` stays)."""
        if not self.namespace_selector:
            return self
        chosen = {ns for ns, labels in namespace_labels.items() if labels_match(self.namespace_selector, labels)}
        return AffinityTerm(self.selector, self.namespaces | chosen, None, self.topology_key)


def affinity_term(raw: Mapping[str, Any], pod_namespace: str) -> AffinityTerm:
    """A PodAffinityTerm of a pod in ``pod_namespace``."""
    try:
        selector = None if raw.get("labelSelector") is None else selector_from_dict(raw["labelSelector"])
        ns_raw = raw.get("namespaceSelector")
        ns_selector = None if ns_raw is None else selector_from_dict(ns_raw)
    except SelectorError:
        selector, ns_raw, ns_selector = None, None, None
    namespaces = frozenset(str(n) for n in raw.get("namespaces") or ())
    if not namespaces and ns_raw is None:
        namespaces = frozenset({pod_namespace})
    return AffinityTerm(selector, namespaces, ns_selector, str(raw.get("topologyKey") or ""))


@dataclass(frozen=True)
class PodTerms:
    """A pod's required pod affinity and anti-affinity terms."""

    affinity: tuple[AffinityTerm, ...] = ()
    anti_affinity: tuple[AffinityTerm, ...] = ()


NO_TERMS = PodTerms()


def pod_terms(pod: Obj) -> PodTerms:
    """The required terms of ``podAffinity`` and ``podAntiAffinity``."""
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    namespace = pod["metadata"].get("namespace") or ""

    def terms(kind: str) -> tuple[AffinityTerm, ...]:
        raw = (affinity.get(kind) or {}).get(REQUIRED) or []
        return tuple(affinity_term(t, namespace) for t in raw if isinstance(t, dict))

    if not affinity.get("podAffinity") and not affinity.get("podAntiAffinity"):
        return NO_TERMS
    return PodTerms(terms("podAffinity"), terms("podAntiAffinity"))


def _add_domains(counts: Counter[Pair], terms: Iterable[AffinityTerm], node: Obj) -> None:
    node_labels = labels_of(node)
    for term in terms:
        value = node_labels.get(term.topology_key)
        if value is not None:
            counts[(term.topology_key, value)] += 1


class BoundPods:
    """The pods bound to nodes, indexed for InterPodAffinity: by namespace (and label, on demand), the
    anti-affinity terms they carry counted by domain, and the counts already asked for in this pass
    (kept current as pods are bound)."""

    def __init__(self, namespace_labels: Mapping[str, Mapping[str, str]]) -> None:
        self.namespace_labels = namespace_labels
        self._by_namespace: dict[str, list[Placed]] = {}
        self._by_label: dict[str, dict[tuple[str, str], list[Placed]]] = {}
        self._anti_terms: dict[AffinityTerm, Counter[Pair]] = {}
        self._matching_all: dict[tuple[AffinityTerm, ...], Counter[Pair]] = {}
        self._matching: dict[AffinityTerm, Counter[Pair]] = {}

    def add(self, pod: Obj, node: Obj, terms: PodTerms) -> None:
        placed = (pod, node)
        namespace = pod["metadata"].get("namespace") or ""
        self._by_namespace.setdefault(namespace, []).append(placed)
        index = self._by_label.get(namespace)
        if index is not None:
            for label in labels_of(pod).items():
                index.setdefault(label, []).append(placed)
        for term in terms.anti_affinity:
            _add_domains(self._anti_terms.setdefault(term, Counter()), (term,), node)
        for all_terms, counts in self._matching_all.items():
            if all(t.matches(pod) for t in all_terms):
                _add_domains(counts, all_terms, node)
        for term, counts in self._matching.items():
            if term.matches(pod):
                _add_domains(counts, (term,), node)

    def matching_all(self, terms: tuple[AffinityTerm, ...]) -> Counter[Pair]:
        """Per domain of each term, the bound pods that match every term (kube's affinityCounts)."""
        counts = self._matching_all.get(terms)
        if counts is None:
            counts = Counter()
            for pod, node in self._candidates(terms[0]):
                if all(t.matches(pod) for t in terms):
                    _add_domains(counts, terms, node)
            self._matching_all[terms] = counts
        return counts

    def matching(self, term: AffinityTerm) -> Counter[Pair]:
        """Per domain of the term, the bound pods it selects (kube's antiAffinityCounts, one term)."""
        counts = self._matching.get(term)
        if counts is None:
            counts = Counter()
            for pod, node in self._candidates(term):
                if term.matches(pod):
                    _add_domains(counts, (term,), node)
            self._matching[term] = counts
        return counts

    def existing_anti_affinity(self, pod: Obj) -> Counter[Pair]:
        """The domains where a bound pod's anti-affinity term selects ``pod``."""
        own = self.namespace_labels.get(pod["metadata"].get("namespace") or "") or {}
        total: Counter[Pair] = Counter()
        for term, counts in self._anti_terms.items():
            if term.matches(pod, own):
                total.update(counts)
        return total

    def _candidates(self, term: AffinityTerm) -> Iterable[Placed]:
        """Bound pods the term might select: its namespaces, narrowed by one of its equality labels."""
        if term.selector is None:
            return ()
        namespaces = self._by_namespace if term.namespace_selector == () else term.namespaces
        equality = next(((r.key, r.values[0]) for r in term.selector
                         if r.op == "=" or (r.op == "in" and len(r.values) == 1)), None)
        found: list[Placed] = []
        for namespace in namespaces:
            if equality is None:
                found += self._by_namespace.get(namespace, ())
            else:
                found += self._label_index(namespace).get(equality, ())
        return found

    def _label_index(self, namespace: str) -> dict[tuple[str, str], list[Placed]]:
        index = self._by_label.get(namespace)
        if index is None:
            index = {}
            for placed in self._by_namespace.get(namespace, ()):
                for label in labels_of(placed[0]).items():
                    index.setdefault(label, []).append(placed)
            self._by_label[namespace] = index
        return index


@dataclass(frozen=True)
class InterPodAffinity:
    """What the InterPodAffinity filter knows of one pending pod (kube's preFilterState)."""

    terms: PodTerms
    affinity_counts: Counter[Pair]
    anti_affinity_counts: Counter[Pair]
    existing_anti_affinity_counts: Counter[Pair]
    first_of_group: bool  # no bound pod matches all the affinity terms, and the pod matches them itself

    def reason(self, node: Obj) -> str | None:
        """Why the filter rejects the node, or None."""
        node_labels = labels_of(node)
        if not self._affinity_holds(node_labels):
            return AFFINITY_REASON
        for term in self.terms.anti_affinity:
            value = node_labels.get(term.topology_key)
            if value is not None and self.anti_affinity_counts[(term.topology_key, value)] > 0:
                return ANTI_AFFINITY_REASON
        if self.existing_anti_affinity_counts and any(
                pair in self.existing_anti_affinity_counts for pair in node_labels.items()):
            return EXISTING_ANTI_AFFINITY_REASON
        return None

    def _affinity_holds(self, node_labels: Mapping[str, str]) -> bool:
        satisfied = True
        for term in self.terms.affinity:
            value = node_labels.get(term.topology_key)
            if value is None:
                return False
            if self.affinity_counts[(term.topology_key, value)] <= 0:
                satisfied = False
        return satisfied or self.first_of_group


def inter_pod_affinity(pod: Obj, terms: PodTerms, bound: BoundPods) -> InterPodAffinity | None:
    """The filter's state for ``pod``, or None when neither its terms nor any bound pod's apply."""
    existing = bound.existing_anti_affinity(pod)
    if terms is NO_TERMS and not existing:
        return None
    affinity = tuple(t.resolved(bound.namespace_labels) for t in terms.affinity)
    anti = tuple(t.resolved(bound.namespace_labels) for t in terms.anti_affinity)
    affinity_counts = bound.matching_all(affinity) if affinity else Counter()
    anti_counts: Counter[Pair] = Counter()
    for term in anti:
        anti_counts.update(bound.matching(term))
    first = not affinity_counts and bool(affinity) and all(t.matches(pod) for t in affinity)
    return InterPodAffinity(PodTerms(affinity, anti), affinity_counts, anti_counts, existing, first)


# ---- the filters and the message ----------------------------------------------------------------

def filter_reason(pod: Obj, node: Obj, load: int, affinity: InterPodAffinity | None = None) -> str | None:
    """Why the node cannot take the pod (the scheduler's wording), or None when it fits."""
    spec = pod.get("spec") or {}
    if (node.get("spec") or {}).get("unschedulable") and not tolerates(
            spec.get("tolerations"), {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}):
        return "node(s) were unschedulable"
    taint = untolerated_taint(spec, node)
    if taint is not None:
        return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"
    if not pod_fits_node_affinity(spec, node):
        return "node(s) didn't match Pod's node affinity/selector"
    capacity = int(((node.get("status") or {}).get("allocatable") or {}).get("pods") or 110)
    if load >= capacity:
        return TOO_MANY_PODS
    return affinity.reason(node) if affinity is not None else None


def unschedulable_message(total: int, reasons: Counter[str]) -> str:
    """kube-scheduler's FitError, then what preemption (which the twin never does) would add."""
    if total == 0:
        return NO_NODES_MESSAGE
    parts = ", ".join(sorted(f"{n} {r}" for r, n in reasons.items()))
    detail = f": {parts}" if parts else ""
    no_victims = sum(n for r, n in reasons.items() if r in RESOLVABLE_REASONS)
    preemption = sorted(f"{n} {text}" for n, text in (
        (no_victims, "No preemption victims found for incoming pod"),
        (total - no_victims, "Preemption is not helpful for scheduling")) if n)
    return f"0/{total} nodes are available{detail}. preemption: 0/{total} nodes are available: " \
           f"{', '.join(preemption)}."


# ---- what a retry depends on --------------------------------------------------------------------

def _node_view(node: Obj | None) -> tuple[Any, ...] | None:
    """What the filters read of a node."""
    if node is None:
        return None
    spec = node.get("spec") or {}
    return (labels_of(node), spec.get("taints"), spec.get("unschedulable"), node_ready(node),
            ((node.get("status") or {}).get("allocatable") or {}).get("pods"))


def _bound_view(pod: Obj | None) -> tuple[Any, ...] | None:
    """What the filters read of a pod bound to a node (None for a pod that is not, or no longer, there)."""
    if pod is None or not (pod.get("spec") or {}).get("nodeName") or not pod_active(pod):
        return None
    return pod["spec"]["nodeName"], labels_of(pod)


def _attempt_key(pod: Obj, version: int) -> tuple[Any, ...]:
    return version, pod["metadata"].get("generation"), labels_of(pod)


def _is_ours(pod: Obj) -> bool:
    return (pod.get("spec") or {}).get("schedulerName", SCHEDULER_NAME) in (SCHEDULER_NAME, None, "")


class Scheduler(Controller):
    """Binds unscheduled pods of the default scheduler to the least loaded feasible node."""

    name = "scheduler"
    watches = (PODS, NODES)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._changes = 0  # bumped by every store change the filters could see
        self._noting = False
        self._attempts: dict[str, tuple[Any, ...]] = {}  # pod uid -> _attempt_key of its last failure
        self._events: dict[str, dict[str, str]] = {}  # pod uid -> failure message -> Event name
        self._terms: dict[str, PodTerms] = {}  # pod uid -> its terms (a pod's affinity never changes)
        self._terms_before: dict[str, PodTerms] = {}  # the previous pass's, while this pass reads them

    def reconcile(self) -> None:
        if not self._noting:
            self.store.add_listener(self._note_change)
            self._noting = True
        nodes = list(self.store.iter_all(NODES))
        by_name = {n["metadata"]["name"]: n for n in nodes}
        load: Counter[str] = Counter()
        bound: list[Placed] = []
        pending: list[Obj] = []
        for pod in self.store.iter_all(PODS):
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name:
                if pod_active(pod):
                    load[node_name] += 1
                    if node_name in by_name:
                        bound.append((pod, by_name[node_name]))
            elif pod_active(pod) and _is_ours(pod):
                pending.append(pod)
        self._forget_all_but({p["metadata"].get("uid", "") for p in pending})
        due = [p for p in pending if self._attempts.get(p["metadata"].get("uid", ""))
               != _attempt_key(p, self._changes)]
        if not due:
            return
        self._terms_before, self._terms = self._terms, {}  # keep only the terms of pods still there
        index = BoundPods(self._namespace_labels())
        for pod, node in bound:
            index.add(pod, node, self._terms_of(pod))
        due.sort(key=lambda p: (-int(p["spec"].get("priority") or 0),
                                p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
        for pod in due:
            self._schedule(pod, nodes, load, index)
        self._terms_before = {}

    def _schedule(self, pod: Obj, nodes: Sequence[Obj], load: Counter[str], bound: BoundPods) -> None:
        """One attempt: bind the pod to the best feasible node, or record why there is none."""
        version = self._changes
        terms = self._terms_of(pod)
        affinity = inter_pod_affinity(pod, terms, bound)
        reasons: Counter[str] = Counter()
        feasible = []
        for node in nodes:
            reason = filter_reason(pod, node, load[node["metadata"]["name"]], affinity)
            if reason is None:
                feasible.append(node)
            else:
                reasons[reason] += 1
        uid = pod["metadata"].get("uid", "")
        if not feasible:
            self._fail(pod, unschedulable_message(len(nodes), reasons))
            self._attempts[uid] = _attempt_key(pod, version)
            return
        best = min(feasible, key=lambda n: (load[n["metadata"]["name"]], n["metadata"]["name"]))
        if self._bind(pod, best["metadata"]["name"]):
            load[best["metadata"]["name"]] += 1
            bound.add(pod, best, terms)
            self._attempts.pop(uid, None)

    def _terms_of(self, pod: Obj) -> PodTerms:
        if not (pod.get("spec") or {}).get("affinity"):
            return NO_TERMS
        uid = pod["metadata"].get("uid", "")
        terms = self._terms.get(uid) or self._terms_before.get(uid) or pod_terms(pod)
        self._terms[uid] = terms
        return terms

    def _namespace_labels(self) -> dict[str, Mapping[str, str]]:
        return {ns["metadata"]["name"]: labels_of(ns) for ns in self.store.iter_all(NAMESPACES)}

    def _forget_all_but(self, pending: set[str]) -> None:
        """Drop the memos of pods no longer Pending (bound, gone)."""
        for memo in (self._attempts, self._events):
            for uid in [u for u in memo if u not in pending]:
                del memo[uid]

    def _note_change(self, event_type: str, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        """A store listener: count the changes that may let a Pending pod fit (or not) somewhere."""
        if rt is NODES:
            changed = event_type != "MODIFIED" or _node_view(obj) != _node_view(old)
        elif rt is PODS:
            changed = _bound_view(obj) != _bound_view(old)
        else:
            changed = rt is NAMESPACES
        if changed:
            self._changes += 1

    # ---- writes ---------------------------------------------------------------------------------

    def _bind(self, pod: Obj, node_name: str) -> bool:
        meta = pod["metadata"]
        uid = meta.get("uid")

        def assign(p: Obj) -> None:
            if p["metadata"].get("uid") == uid and not p["spec"].get("nodeName"):
                p["spec"]["nodeName"] = node_name

        bound = self.patch(PODS, meta["namespace"], meta["name"], assign)
        if bound is None or bound["spec"].get("nodeName") != node_name:
            return False

        def scheduled(p: Obj) -> None:
            set_condition(p.setdefault("status", {}), "PodScheduled", "True", probe=True)
            p["status"].setdefault("phase", "Pending")

        self.patch(PODS, meta["namespace"], meta["name"], scheduled, status=True)
        return True

    def _fail(self, pod: Obj, message: str) -> None:
        """PodScheduled=False with the message, and the FailedScheduling Event."""
        meta = pod["metadata"]

        def change(p: Obj) -> None:
            status = p.setdefault("status", {})
            status.setdefault("phase", "Pending")
            set_condition(status, "PodScheduled", "False", "Unschedulable", message, probe=True)

        if self.patch(PODS, meta["namespace"], meta["name"], change, status=True) is not None:
            self._record_event(pod, message)

    def _record_event(self, pod: Obj, message: str) -> None:
        """A Warning FailedScheduling Event about the pod; the same message again bumps its count."""
        meta = pod["metadata"]
        names = self._events.setdefault(meta.get("uid", ""), {})
        stamp = now_iso()

        def bump(event: Obj) -> None:
            event["count"] = int(event.get("count") or 1) + 1
            event["lastTimestamp"] = stamp

        known = names.get(message)
        if known is not None and self.patch(EVENTS, meta["namespace"], known, bump) is not None:
            return
        event = failed_scheduling_event(pod, message, stamp)
        try:
            names[message] = self.store.create(EVENTS, event)["metadata"]["name"]
        except ApiError as err:
            if err.code not in (404, 409):  # namespace gone, or a name clash: the next failure retries
                raise


def failed_scheduling_event(pod: Obj, message: str, stamp: str) -> Obj:
    """The core/v1 Event kube-scheduler's recorder writes for a failed attempt."""
    meta = pod["metadata"]
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": meta["namespace"]},
        "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": meta["namespace"],
                           "name": meta["name"], "uid": meta.get("uid"),
                           "resourceVersion": meta.get("resourceVersion")},
        "reason": "FailedScheduling", "message": message, "type": "Warning", "action": "Scheduling",
        "source": {"component": SCHEDULER_NAME},
        "reportingComponent": SCHEDULER_NAME, "reportingInstance": SCHEDULER_NAME,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1, "eventTime": None,
    }

