"""The goldpinger mesh verdict, from ``/check_all``'s per-pod answers and the pods and nodes that exist.

Healthy means: every Running goldpinger pod answered (``OK``), each reported exactly one result per
expected peer (N x N in all), every nested ``podResults[*].OK`` is true, and every ``PingTime`` is fresh
(not older than the check's start minus a tolerance). The verdict is broken down by CNI pair
(aws-cni<->aws-cni, aws-cni<->cilium, cilium<->cilium); a pod's CNI is its node's: ``aws-cni`` when the
node is labelled ``cni=aws-cni`` or belongs to an old node group (before the labels exist), else Cilium.

Only the Running, not terminating pods listed are judged: answers from or about any other pod (one from
before a goldpinger restart, one that is gone) are left out, and a result is matched to a pod by its key
(the pod's name) or, for a key that names no listed pod, by its ``PodIP``.

It scales with the mesh: the answers are judged one instance at a time as they arrive
(``evaluate_responses`` takes an iterator, ``goldpinger.check_all_responses`` streams one), and the
verdict keeps counts, a bounded sample of failures, and a matrix of counts per CNI (per node too for
small meshes), never the N x N results themselves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from cilium_migration.readiness import (
    AWS_CNI,
    CILIUM,
    name_of,
    node_cni,
    node_nodegroup,
    pod_node,
    pod_running,
)

PAIRS = ("aws-cni<->aws-cni", "aws-cni<->cilium", "cilium<->cilium")
BOTH = "both"  # a node whose goldpinger pods have both CNIs (in place)
FAILED_SAMPLE = 20  # failures kept per CNI pair (all are counted)
PROBLEM_SAMPLE = 50  # problems kept (all are counted)
NODE_MATRIX_MAX = 64  # a per-node matrix is kept up to this many nodes
FAILING_NODES = 20  # the nodes with the most failed pings, kept for the report


# ---- goldpinger's /check_all schema: only what the verdict reads (msgspec skips the rest) -----------

class PingResult(msgspec.Struct, gc=False):  # a million of them at 1,000 pods: not for the GC to track
    """One ``podResults`` entry: instance -> peer."""

    OK: Any = False
    PingTime: Any = None
    PodIP: Any = None
    error: Any = None


class PodResponse(msgspec.Struct, gc=False):
    podResults: dict[str, PingResult | None] | None = None


class CheckAllEntry(msgspec.Struct):
    """One ``responses`` entry: an instance's answer to ``/check`` as gathered by ``/check_all``."""

    OK: Any = False
    PodIP: Any = None
    error: Any = None
    response: PodResponse | None = None


def pair_name(a: str, b: str) -> str:
    first, second = sorted((a, b))
    return f"{first}<->{second}"


@dataclass
class PairVerdict:
    ok: int = 0
    failed: list[str] = field(default_factory=list)  # a sample: "src -> dst: reason"
    failed_count: int = 0

    @property
    def healthy(self) -> bool:
        return not self.failed_count


@dataclass
class MeshVerdict:
    """The mesh's state: no problem counted means healthy. ``problems`` is a sample of
    ``problem_count``; ``matrix`` counts [ok, failed] pings per (source CNI, destination CNI)."""

    expected: list[str]
    problems: list[str] = field(default_factory=list)
    pairs: dict[str, PairVerdict] = field(default_factory=dict)
    problem_count: int = 0
    matrix: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    pods_by_cni: dict[str, int] = field(default_factory=dict)
    node_matrix: dict[tuple[str, str], list[int]] | None = None  # per (source node, destination node)
    node_cni: dict[str, str] = field(default_factory=dict)
    node_failures: Counter[str] = field(default_factory=Counter)

    @property
    def healthy(self) -> bool:
        return bool(self.expected) and not self.problem_count

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < PROBLEM_SAMPLE:
            self.problems.append(text)

    def failing_pairs(self) -> list[str]:
        return [p for p, v in self.pairs.items() if not v.healthy]

    def summary(self) -> str:
        n = len(self.expected)
        head = (f"mesh healthy: {n} goldpinger pods, {n * n} pings OK" if self.healthy
                else f"mesh unhealthy: {self.problem_count} problem(s) among {n} goldpinger pods")
        return head + "; " + "; ".join(self.pair_lines())

    def pair_lines(self) -> list[str]:
        lines = []
        for pair, v in sorted(self.pairs.items()):
            state = "OK" if v.healthy else "FAILING"
            lines.append(f"{pair}: {state} ({v.ok} ok, {v.failed_count} failed)")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The XCom: bounded whatever the mesh's size (samples and counts; the per-node matrix only up to
        ``NODE_MATRIX_MAX`` nodes)."""
        cnis = sorted({c for pair in self.matrix for c in pair} | set(self.pods_by_cni))
        out: dict[str, Any] = {
            "healthy": self.healthy, "expected": self.expected, "problems": self.problems,
            "problem_count": self.problem_count,
            "pairs": {p: {"ok": v.ok, "failed": v.failed[:FAILED_SAMPLE], "failed_count": v.failed_count,
                          "healthy": v.healthy} for p, v in self.pairs.items()},
            "summary": self.summary(),
            "pods_by_cni": dict(sorted(self.pods_by_cni.items())),
            "matrix": {"cnis": cnis,  # rows: source CNI, columns: destination CNI
                       "ok": [[self.matrix.get((s, d), [0, 0])[0] for d in cnis] for s in cnis],
                       "failed": [[self.matrix.get((s, d), [0, 0])[1] for d in cnis] for s in cnis]},
            "failing_nodes": [{"node": n, "cni": self.node_cni.get(n), "failed": c}
                              for n, c in self.node_failures.most_common(FAILING_NODES)],
        }
        if self.node_matrix is not None:
            names = sorted(self.node_cni, key=lambda n: (self.node_cni[n], n))
            out["node_matrix"] = {
                "nodes": names, "cnis": [self.node_cni[n] for n in names],
                "ok": [[self.node_matrix.get((s, d), [0, 0])[0] for d in names] for s in names],
                "failed": [[self.node_matrix.get((s, d), [0, 0])[1] for d in names] for s in names]}
        return out


def parse_time(value: Any) -> datetime | None:
    """RFC 3339, with or without fractional seconds (goldpinger uses Go's time format)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:  # Go may print up to 9 fractional digits; Python takes 6
        head, _, rest = text.partition(".")
        digits = rest[:len(rest) - len(rest.lstrip("0123456789"))]
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{tz}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def as_entry(entry: Any) -> CheckAllEntry:
    """A parsed ``responses`` entry (plain dicts) in the verdict's schema; a malformed one counts as an
    instance that answered nothing usable."""
    if isinstance(entry, CheckAllEntry):
        return entry
    try:
        return msgspec.convert(entry or {}, CheckAllEntry)
    except msgspec.ValidationError as exc:
        return CheckAllEntry(OK=False, error=f"malformed answer: {exc}")


def evaluate(check_all: Mapping[str, Any], pods: Iterable[Mapping[str, Any]],
             nodes: Iterable[Mapping[str, Any]], *, started_at: datetime,
             tolerance_s: float = 30.0, aws_nodegroups: Iterable[str] = ()) -> MeshVerdict:
    """Judge the mesh from a whole parsed ``/check_all`` answer (see ``evaluate_responses``)."""
    entries = ((key, as_entry(entry)) for key, entry in (check_all.get("responses") or {}).items())
    return evaluate_responses(entries, pods, nodes, started_at=started_at, tolerance_s=tolerance_s,
                              aws_nodegroups=aws_nodegroups)


def evaluate_responses(responses: Iterable[tuple[str, CheckAllEntry]], pods: Iterable[Mapping[str, Any]],
                       nodes: Iterable[Mapping[str, Any]], *, started_at: datetime,
                       tolerance_s: float = 30.0, aws_nodegroups: Iterable[str] = (),
                       cilium_pods: Collection[str] | None = None) -> MeshVerdict:
    """Judge the mesh. ``responses``: ``/check_all``'s ``responses`` members (key, entry), judged as they
    come (an iterator is read once); ``pods``: the goldpinger pods listed from the API; ``nodes``: all
    nodes; ``cilium_pods`` (in place, where both CNIs share nodes): the names of the pods Cilium wired,
    every other pod being aws-cni's, instead of each pod taking its node's CNI. A node whose pods have
    both CNIs shows as ``both`` in the node matrix."""
    node_by_name = {name_of(n): n for n in nodes}
    pods = list(pods)
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    running = sorted((p for p in live if pod_running(p)), key=name_of)
    expected = [name_of(p) for p in running]
    verdict = MeshVerdict(expected=expected, pairs={})
    for p in live:
        if not pod_running(p):
            verdict.problem(f"{name_of(p)}: not Running ({(p.get('status') or {}).get('phase')})")
    if not running:
        verdict.problem("no Running goldpinger pods")
        return verdict

    old_groups = set(aws_nodegroups)

    def cni(node: Mapping[str, Any] | None) -> str:
        if node is not None and node_nodegroup(node) in old_groups:
            return AWS_CNI
        return node_cni(node)

    node_of = {name_of(p): pod_node(p) or "" for p in running}
    if cilium_pods is not None:
        cni_of = {pod: CILIUM if pod in cilium_pods else AWS_CNI for pod in node_of}
    else:
        cni_of = {pod: cni(node_by_name.get(node)) for pod, node in node_of.items()}
    listed = {name_of(p) for p in pods}  # keys naming these are never matched by IP
    by_ip = {(p.get("status") or {}).get("podIP"): name_of(p) for p in running}
    by_ip.pop(None, None)
    verdict.pods_by_cni = dict(Counter(cni_of.values()))
    for pod, node in node_of.items():
        if node:
            seen = verdict.node_cni.get(node)
            verdict.node_cni[node] = cni_of[pod] if seen in (None, cni_of[pod]) else BOTH
    if len(verdict.node_cni) <= NODE_MATRIX_MAX:
        verdict.node_matrix = {}
    judge = _Judge(verdict, cni_of, node_of, started_at.timestamp() - tolerance_s)

    def resolve(key: str, ip: Any) -> str | None:
        if key in cni_of:
            return key
        return None if key in listed else by_ip.get(ip)

    judged: set[str] = set()
    for key, entry in responses:
        src = resolve(key, entry.PodIP)
        if src is None or src in judged:
            continue  # an instance that is gone, not Running, or from before a restart
        judged.add(src)
        judge.instance(src, entry, resolve)
    for src in expected:
        if src not in judged:
            verdict.problem(f"{src}: did not answer /check_all")
    return verdict


class _Judge:
    """Counts one instance's results into the verdict (the N x N loop: kept lean)."""

    def __init__(self, verdict: MeshVerdict, cni_of: dict[str, str], node_of: dict[str, str],
                 cutoff: float) -> None:
        self.verdict, self.cni_of, self.node_of, self.cutoff = verdict, cni_of, node_of, cutoff
        self.times: dict[Any, float | None] = {}  # PingTime text -> timestamp (rounds share a stamp)

    def _fresh(self, stamp: Any) -> str | None:
        when = self.times.get(stamp, -1.0) if isinstance(stamp, str) else None
        if when == -1.0:
            parsed = parse_time(stamp)
            when = parsed.timestamp() if parsed else None
            if len(self.times) > 100_000:
                self.times.clear()
            self.times[stamp] = when
        if when is None:
            return "no PingTime"
        if when < self.cutoff:
            return f"stale PingTime {stamp}"
        return None

    def instance(self, src: str, entry: CheckAllEntry, resolve: Any) -> None:
        verdict, cni_of = self.verdict, self.cni_of
        if not entry.OK:
            verdict.problem(f"{src}: answered not OK ({entry.error or 'no detail'})")
        results = (entry.response.podResults if entry.response is not None else None) or {}
        src_cni = cni_of[src]
        if verdict.node_matrix is None and self._all_ok(results):  # the common case, without a loop per peer
            for dst_cni, n in verdict.pods_by_cni.items():
                verdict.pairs.setdefault(pair_name(src_cni, dst_cni), PairVerdict()).ok += n
                verdict.matrix.setdefault((src_cni, dst_cni), [0, 0])[0] += n
            return
        ok_to: Counter[str] = Counter()  # destination pod -> ok count (1, or more for duplicate keys)
        seen: set[str] = set()
        for peer_key, result in results.items():
            dst = peer_key if peer_key in cni_of else resolve(peer_key, result.PodIP if result else None)
            if dst is None:
                continue  # a pod that is gone, not Running yet, or from before a restart: not in this mesh
            seen.add(dst)
            if result is None:
                self.fail(src, dst, "no result")
            elif not result.OK:
                self.fail(src, dst, f"ping failed ({result.error or 'no detail'})")
            elif reason := self._fresh(result.PingTime):
                self.fail(src, dst, reason)
            else:
                ok_to[dst] += 1
        for dst in cni_of:
            if dst not in seen:
                self.fail(src, dst, "no result")
        by_cni: Counter[str] = Counter()
        for dst, n in ok_to.items():
            by_cni[cni_of[dst]] += n
        for dst_cni, n in by_cni.items():
            verdict.pairs.setdefault(pair_name(src_cni, dst_cni), PairVerdict()).ok += n
            verdict.matrix.setdefault((src_cni, dst_cni), [0, 0])[0] += n
        if verdict.node_matrix is not None:
            src_node = self.node_of[src]
            for dst, n in ok_to.items():
                verdict.node_matrix.setdefault((src_node, self.node_of[dst]), [0, 0])[0] += n

    def _all_ok(self, results: dict[str, PingResult | None]) -> bool:
        """Exactly one result per expected pod, keyed by its name, each OK and fresh."""
        if results.keys() != self.cni_of.keys():
            return False
        values = results.values()
        if not all(r is not None and r.OK for r in values):
            return False
        try:
            stamps = {r.PingTime for r in values if r is not None}
        except TypeError:  # a PingTime that is not text: the loop per peer says what is wrong
            return False
        return not any(self._fresh(stamp) for stamp in stamps)

    def fail(self, src: str, dst: str, reason: str) -> None:
        verdict, cni_of = self.verdict, self.cni_of
        pair = pair_name(cni_of[src], cni_of[dst])
        pv = verdict.pairs.setdefault(pair, PairVerdict())
        pv.failed_count += 1
        if len(pv.failed) < FAILED_SAMPLE:
            pv.failed.append(f"{src} -> {dst}: {reason}")
        verdict.problem_count += 1
        if len(verdict.problems) < PROBLEM_SAMPLE:
            verdict.problems.append(f"{src} -> {dst}: {reason}" if reason == "no result"
                                    else f"{src} -> {dst} ({pair}): {reason}")
        verdict.matrix.setdefault((cni_of[src], cni_of[dst]), [0, 0])[1] += 1
        src_node, dst_node = self.node_of[src], self.node_of[dst]
        verdict.node_failures[src_node] += 1
        if dst_node != src_node:
            verdict.node_failures[dst_node] += 1
        if verdict.node_matrix is not None:
            verdict.node_matrix.setdefault((src_node, dst_node), [0, 0])[1] += 1
