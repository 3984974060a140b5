"""How the demo and the e2e tests answer approvals: read the evidence, then choose, as a person would."""

from __future__ import annotations

from dataclasses import dataclass

from localrun.rest import PendingApproval

UNHEALTHY_MARKERS = ("unhealthy", "failing", "not ready", "notready")


@dataclass
class Decision:
    option: str
    reason: str


def pick(approval: PendingApproval, *, wanted: str | None = None) -> Decision:
    """Choose ``wanted`` when given (a test's scripted answer); otherwise proceed only on healthy evidence."""
    options = {o.lower(): o for o in approval.options}
    if wanted is not None:
        match = next((o for k, o in options.items() if k.startswith(wanted.lower())), None)
        if match is None:
            raise ValueError(f"{approval.task_id}: no option starting with {wanted!r} in {approval.options}")
        return Decision(match, f"scripted answer {wanted!r}")
    body = approval.body.lower()
    bad = [m for m in UNHEALTHY_MARKERS if m in body]
    proceed = next((o for k, o in options.items() if k.startswith("proceed")), approval.options[0])
    back = next((o for k, o in options.items() if "roll" in k), None)
    if bad and back:
        return Decision(back, f"the evidence says {', '.join(bad)}")
    return Decision(proceed, "the evidence shows a healthy mesh and Ready nodes")
