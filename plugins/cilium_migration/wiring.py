"""How both migration DAGs wire their tasks: forward steps, two approval gates, rollback, audit report.

Rules (the DAG files only name their tasks and call ``wire_migration``):
- ``forward`` then the first gate, which branches to the ``middle`` phase or to its ``first_rejected``;
  ``middle`` then the second gate, which branches to the ``last`` phase, ``hold`` or ``second_rejected``.
- Any failed forward step (``on_gate_failure``, ONE_FAILED) or a rejection leads to ``rollback``'s first
  step (ONE_SUCCESS), then the rollback's steps in order.
- A phase whose first step is skipped is skipped whole in one scheduler loop, not a loop per step (a task
  skips as soon as any upstream is skipped): after a success the rollback costs one loop.
- The audit report runs whatever happened, after every task but the two gates (a branch would skip it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cilium_migration.approvals import HOLD, PROCEED, ROLL_BACK


def approval_gate(group: str, *, proceed_to: str, subject: str, evidence_title: str, mesh_task_id: str,
                  changes: Sequence[str], can_hold: bool = False) -> Any:
    """The gate ``<group>.approve`` (call it inside its TaskGroup): "proceed" branches to ``proceed_to``,
    "roll back" to ``<group>.rejected``, and with ``can_hold`` "hold" to ``<group>.hold``. A timeout never
    approves: it rolls back, or holds where holding is possible."""
    from cilium_migration.operators import MigrationApprovalOperator

    mapping = {PROCEED: proceed_to, **({HOLD: f"{group}.hold"} if can_hold else {}), ROLL_BACK: f"{group}.rejected"}
    return MigrationApprovalOperator(task_id="approve", subject=subject, options=list(mapping),
                                     defaults=[HOLD if can_hold else ROLL_BACK], options_mapping=mapping,
                                     evidence_title=evidence_title, mesh_task_id=mesh_task_id, changes=changes)


def wire_migration(*, forward: Sequence[Any], first_gate: Any, first_rejected: Any, middle: Sequence[Any],
                   second_gate: Any, hold: Any, second_rejected: Any, last: Sequence[Any], on_gate_failure: Any,
                   rollback: Sequence[Any], audit_report: Any) -> None:
    """Set the dependencies described in the module's rules."""
    from airflow.sdk import chain

    chain(*forward, first_gate, [middle[0], first_rejected])
    chain(*middle, second_gate, [last[0], hold, second_rejected])
    chain(*last)
    chain([*forward, *middle, *last], on_gate_failure)
    chain([on_gate_failure, first_rejected, second_rejected], rollback[0])
    chain(*rollback)
    for phase in (list(rollback), [*middle, second_gate], list(last)):
        phase[0] >> phase[2:]
    chain([*forward, *middle, *last, first_rejected, hold, second_rejected, on_gate_failure, *rollback],
          audit_report)
