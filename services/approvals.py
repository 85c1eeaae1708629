"""Deciding an approval task as a verified person: the role they decide in, and their limit.

The workflow still checks the role against the task's approvers and refuses anyone deciding their
own request (four eyes, by actor id); this adds what the workflow cannot know: which of the
person's roles applies, and the most that role may approve (``config/roles.yaml``).
"""

from __future__ import annotations

from temporalio.client import Client

import starter
from models.payloads import Decision, StepDecision
from services.identity import Actor, OverLimit, check_approval_limit, decision_role


async def decide(
    client: Client, account_id: str, actor: Actor, task_id: str, decision: Decision, reason: str
) -> str:
    """Approve or deny ``task_id`` as ``actor``.

    Raises:
        starter.ActionRejected: ``UnknownTask``, ``NotAnApprover`` (none of the actor's roles may
            decide it now), ``OverLimit`` (an approval above the actor's limit), or whatever the
            workflow refuses (``FourEyes``, ``AlreadyDecided``, ...).
    """
    account = await starter.get_account(client, account_id)
    task = next((t for t in account.tasks if t.task_id == task_id), None)
    if task is None:
        raise starter.ActionRejected("UnknownTask", f"no open approval task {task_id}")
    if task.requested_by == actor.id:
        # The workflow refuses this too; said first here, so that no limit hides it.
        raise starter.ActionRejected("FourEyes", "nobody approves their own request (four eyes)")
    role = decision_role(actor, task.roles)
    if role is None:
        held = ", ".join(sorted(actor.roles)) or "no role"
        raise starter.ActionRejected(
            "NotAnApprover",
            f"your roles ({held}) may not decide this task now; approvers: "
            + ", ".join(task.roles),
        )
    if decision is Decision.APPROVE:
        status = await starter.get_status(client, account_id)
        try:
            check_approval_limit(actor, task, status.balance_cents)
        except OverLimit as exc:
            raise starter.ActionRejected(OverLimit.kind, str(exc)) from None
    answer = StepDecision(
        task_id=task_id, decision=decision, decided_by=actor.id, role=role, reason=reason
    )
    return await starter.decide_step(client, account_id, answer)
