"""aws-node's fence: ``cni In [aws-cni]`` in every nodeSelectorTerm, idempotent, and exactly reversible."""

from __future__ import annotations

import copy

import pytest

from cilium_migration.aws_node import FENCE, fenced_affinity, is_fenced, unfenced_affinity

RUNBOOK_BEFORE = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]},
        {"key": "eks.amazonaws.com/compute-type", "operator": "NotIn", "values": ["fargate"]},
    ]}]}}}


def ds(affinity: dict | None) -> dict:
    return {"spec": {"template": {"spec": {"affinity": affinity}}}}


def test_fencing_the_runbooks_affinity_appends_the_cni_expression() -> None:
    after = fenced_affinity(RUNBOOK_BEFORE)
    terms = after["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][-1] == FENCE
    assert terms[0]["matchExpressions"][:3] == RUNBOOK_BEFORE["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
    assert is_fenced(ds(after)) and not is_fenced(ds(RUNBOOK_BEFORE))


def test_fencing_does_not_modify_its_input_and_is_idempotent() -> None:
    original = copy.deepcopy(RUNBOOK_BEFORE)
    once = fenced_affinity(RUNBOOK_BEFORE)
    assert RUNBOOK_BEFORE == original
    assert fenced_affinity(once) == once


def test_every_term_is_fenced() -> None:
    two_terms = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "a", "operator": "Exists"}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}
    terms = fenced_affinity(two_terms)["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert all(FENCE in t["matchExpressions"] for t in terms)


@pytest.mark.parametrize("before", [
    pytest.param(RUNBOOK_BEFORE, id="runbook"),
    pytest.param(None, id="no-affinity"),
    pytest.param({"podAntiAffinity": {"x": 1}}, id="only-pod-anti-affinity"),
])
def test_unfencing_restores_the_original(before: dict | None) -> None:
    assert is_fenced(ds(fenced_affinity(before)))
    assert unfenced_affinity(fenced_affinity(before)) == before
