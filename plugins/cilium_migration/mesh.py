"""The goldpinger mesh verdict, from a parsed ``/check_all`` answer and the pods and nodes that exist.

Healthy means: every Running goldpinger pod answered (``OK``), each reported exactly one result per
expected peer (N x N in all), every nested ``podResults[*].OK`` is true, and every ``PingTime`` is fresh
(not older than the check's start minus a tolerance). The verdict is broken down by CNI pair
(aws-cni<->aws-cni, aws-cni<->cilium, cilium<->cilium); a pod's CNI is its node's: ``aws-cni`` when the
node is labelled ``cni=aws-cni`` or belongs to an old node group (before the labels exist), else Cilium.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cilium_migration.readiness import AWS_CNI, name_of, node_cni, node_nodegroup, pod_node, pod_running

PAIRS = ("aws-cni<->aws-cni", "aws-cni<->cilium", "cilium<->cilium")


def pair_name(a: str, b: str) -> str:
    first, second = sorted((a, b))
    return f"{first}<->{second}"


@dataclass
class PairVerdict:
    ok: int = 0
    failed: list[str] = field(default_factory=list)  # "src -> dst: reason"

    @property
    def healthy(self) -> bool:
        return not self.failed


@dataclass
class MeshVerdict:
    """The mesh's state: ``problems`` empty means healthy."""

    expected: list[str]
    problems: list[str] = field(default_factory=list)
    pairs: dict[str, PairVerdict] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return bool(self.expected) and not self.problems

    def failing_pairs(self) -> list[str]:
        return [p for p, v in self.pairs.items() if not v.healthy]

    def summary(self) -> str:
        n = len(self.expected)
        head = (f"mesh healthy: {n} goldpinger pods, {n * n} pings OK" if self.healthy
                else f"mesh unhealthy: {len(self.problems)} problem(s) among {n} goldpinger pods")
        return head + "; " + "; ".join(self.pair_lines())

    def pair_lines(self) -> list[str]:
        lines = []
        for pair, v in sorted(self.pairs.items()):
            state = "OK" if v.healthy else "FAILING"
            lines.append(f"{pair}: {state} ({v.ok} ok, {len(v.failed)} failed)")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy, "expected": self.expected, "problems": self.problems[:50],
            "pairs": {p: {"ok": v.ok, "failed": v.failed[:20], "healthy": v.healthy}
                      for p, v in self.pairs.items()},
            "summary": self.summary(),
        }


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


def evaluate(check_all: Mapping[str, Any], pods: Iterable[Mapping[str, Any]],
             nodes: Iterable[Mapping[str, Any]], *, started_at: datetime,
             tolerance_s: float = 30.0, aws_nodegroups: Iterable[str] = ()) -> MeshVerdict:
    """Judge the mesh. ``pods``: the goldpinger pods listed from the API; ``nodes``: all nodes."""
    node_by_name = {name_of(n): n for n in nodes}
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    running = sorted((p for p in live if pod_running(p)), key=name_of)
    expected = [name_of(p) for p in running]
    verdict = MeshVerdict(expected=expected, pairs={})
    for p in live:
        if not pod_running(p):
            verdict.problems.append(f"{name_of(p)}: not Running ({(p.get('status') or {}).get('phase')})")
    if not running:
        verdict.problems.append("no Running goldpinger pods")
        return verdict

    old_groups = set(aws_nodegroups)

    def cni(pod: Mapping[str, Any]) -> str:
        node = node_by_name.get(pod_node(pod) or "")
        if node is not None and node_nodegroup(node) in old_groups:
            return AWS_CNI
        return node_cni(node)

    cni_of = {name_of(p): cni(p) for p in running}
    by_ip = {(p.get("status") or {}).get("podIP"): name_of(p) for p in running}
    cutoff = started_at.timestamp() - tolerance_s
    responses = check_all.get("responses") or {}

    def resolve(key: str, entry: Mapping[str, Any]) -> str | None:
        if key in cni_of:
            return key
        return by_ip.get(entry.get("PodIP"))

    answered: dict[str, Mapping[str, Any]] = {}
    for key, entry in responses.items():
        src = resolve(key, entry or {})
        if src is not None:
            answered[src] = entry or {}
    for src in expected:
        entry = answered.get(src)
        if entry is None:
            verdict.problems.append(f"{src}: did not answer /check_all")
            continue
        if not entry.get("OK"):
            verdict.problems.append(f"{src}: answered not OK ({entry.get('error') or 'no detail'})")
        results = ((entry.get("response") or {}).get("podResults")) or {}
        seen: set[str] = set()
        for peer_key, result in results.items():
            dst = resolve(peer_key, result or {})
            if dst is None:
                continue  # a pod that is gone or not Running yet; not part of this mesh
            seen.add(dst)
            pair = verdict.pairs.setdefault(pair_name(cni_of[src], cni_of[dst]), PairVerdict())
            reason = _ping_problem(result or {}, cutoff)
            if reason:
                pair.failed.append(f"{src} -> {dst}: {reason}")
                verdict.problems.append(f"{src} -> {dst} ({pair_name(cni_of[src], cni_of[dst])}): {reason}")
            else:
                pair.ok += 1
        for dst in expected:
            if dst not in seen:
                pair = verdict.pairs.setdefault(pair_name(cni_of[src], cni_of[dst]), PairVerdict())
                pair.failed.append(f"{src} -> {dst}: no result")
                verdict.problems.append(f"{src} -> {dst}: no result")
    return verdict


def _ping_problem(result: Mapping[str, Any], cutoff: float) -> str | None:
    if not result.get("OK"):
        return f"ping failed ({result.get('error') or 'no detail'})"
    when = parse_time(result.get("PingTime"))
    if when is None:
        return "no PingTime"
    if when.timestamp() < cutoff:
        return f"stale PingTime {result.get('PingTime')}"
    return None
