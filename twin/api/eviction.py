"""The pods/eviction subresource: delete a pod unless its PodDisruptionBudget forbids it.

Rules (as the real registry): pods that are not Running (Pending, Succeeded, Failed) or already being
deleted are always evictable; a pod covered by no budget is evictable; a pod covered by more than one
is a 500; a healthy pod needs ``disruptionsAllowed > 0``; an unhealthy pod may go while the budget is
met (``unhealthyPodEvictionPolicy: IfHealthyBudget``, or always with ``AlwaysAllow``). A budget named
in ``faults.blocked_pdbs`` ("namespace/name") always refuses. Refusals are 429 TooManyRequests with a
``DisruptionBudget`` cause. The check and the delete happen under the store lock, so concurrent
evictions (kubectl drain sends them in parallel) cannot overdraw a budget.
"""

from __future__ import annotations

from twin import pdb as budgets
from twin.api.messages import Request, Response, json_response, success_status
from twin.api.rest import bad_request, dry_run
from twin.api.routing import Target
from twin.faults import Faults
from twin.resources import PODS
from twin.store import ApiError, Obj, Store

REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


def evict(store: Store, faults: Faults, req: Request, t: Target) -> Response:
    body = req.json_body() or {}
    if not isinstance(body, dict):
        raise bad_request("the body must be an Eviction object")
    if body.get("kind") not in (None, "Eviction"):
        raise bad_request(f"the kind in the data ({body.get('kind')}) does not match the expected kind (Eviction)")
    name = (body.get("metadata") or {}).get("name")
    if name and name != t.name:
        raise bad_request("name in URL does not match name in Eviction object")
    options = body.get("deleteOptions") or {}
    dry = dry_run(req, options)
    uid = (options.get("preconditions") or {}).get("uid")
    with store.lock:
        pod = store.must_get(PODS, t.namespace, t.name or "")
        if _must_check_budget(pod):
            _check_budget(store, faults, pod)
        store.delete(PODS, t.namespace, t.name or "", dry_run=dry, uid=uid)
    return json_response(success_status(201), 201)


def _must_check_budget(pod: Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase == "Running" and not pod["metadata"].get("deletionTimestamp")


def _check_budget(store: Store, faults: Faults, pod: Obj) -> None:
    pdbs = budgets.budgets_for(store, pod)
    if not pdbs:
        return
    if len(pdbs) > 1:
        raise ApiError(500, "InternalError",
                       "This pod has more than one PodDisruptionBudget, which the eviction subresource does "
                       "not support.")
    pdb = pdbs[0]
    name = pdb["metadata"]["name"]
    healthy, desired, _ = budgets.budget_numbers(store, pdb)
    blocked = f"{pdb['metadata']['namespace']}/{name}" in faults.blocked_pdbs
    if budgets.pod_is_healthy(pod):
        allowed = healthy - desired > 0
    elif (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        allowed = True
    else:
        allowed = healthy >= desired
    if blocked or not allowed:
        raise ApiError(429, "TooManyRequests", REFUSED, {"causes": [{
            "reason": "DisruptionBudget",
            "message": f"The disruption budget {name} needs {desired} healthy pods and has {healthy} currently",
        }]})
