"""The console's worklist: every open task, filtered by kind, age and who may work it.

Approvals are decided (``services.staff.decide``) and call outcomes recorded
(``services.facts.call_outcome``) by the console's routes in ``api.console``; this page shows
each task with what working it needs: the call script and the number to dial, who may decide an
approval and why the requester may not (four eyes), and for the tasks the ladder opens by itself
(estate, address, locate, refund, unconfirmed, reply, content) what a person does for them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.console import PREFIX, _page, _signed, _state
from config.roles import Permission
from models.actions import ClosingPurpose
from models.orm import Account, Guarantor, StaffTask, TaskKind, User
from models.payloads import CallResult
from services import queries
from services.identity import Actor

router = APIRouter(prefix=PREFIX, include_in_schema=False)

AGES = {"": "any age", "1": "1 day or more", "7": "7 days or more", "30": "30 days or more"}
"""The age filter: tasks opened at least this many days ago."""

WHAT_TO_DO = {
    "estate": "The guarantor died and contact has ended: send the account to the estate queue "
    "(executor or probate claim). The account page shows the balance and the letters sent.",
    "address": "A letter came back: find the corrected address and enter it on the account page "
    "(Address change); letters may go again.",
    "locate": "No usable address, phone or email: enter a corrected one on the account page.",
    "refund": "The account has been in credit past the refund period: refund the patient from "
    "the billing system.",
    "unconfirmed": "A send was cut off mid-request: check with the provider whether it went out "
    "(it is never sent again by itself).",
    "reply": "A patient's text or email nobody could classify: read it, then act on the account "
    "page (hold, consent, address, life or legal event).",
    "content": "A message was not sent because its wording breaks a content rule: the policy's "
    "template needs a fix.",
}
"""What a person does for the tasks the engine opens by itself (no decision or outcome here)."""


@dataclass(frozen=True)
class TaskExtra:
    """What the worklist shows beyond the task's line: its age, script and number."""

    opened_at: dt.datetime
    subject: str
    script: str
    phone: str
    summary: dict[str, Any]


def _extras(session: Session, ids: list[str]) -> dict[str, TaskExtra]:
    keys = [uuid.UUID(i) for i in ids]
    if not keys:
        return {}
    rows = session.execute(
        select(StaffTask, Guarantor.phone)
        .join(Account, StaffTask.account_id == Account.id)
        .join(Guarantor, Account.guarantor_id == Guarantor.id)
        .where(StaffTask.id.in_(keys))
    )
    found: dict[str, TaskExtra] = {}
    for task, phone in rows:
        detail = task.detail or {}
        found[str(task.id)] = TaskExtra(
            opened_at=task.created_at,
            subject=task.step_id or "",
            script=str(detail.get("script", "")),
            phone=phone or "",
            summary=dict(detail.get("summary") or {}),
        )
    return found


def _user_names(session: Session) -> dict[str, str]:
    return {str(u.id): u.name for u in session.scalars(select(User))}


REQUEST_NOTES = ("write_off", "referral")


def requester(task: queries.TaskView) -> str:
    """Who asked for a task, for the page (four eyes itself is the service's and workflow's): the
    task row's requester, or for a write-off or referral request the author of its note."""
    if task.requested_by != "system":
        return task.requested_by
    return next((n.author for n in task.notes if n.kind in REQUEST_NOTES), task.requested_by)


def workable_by(task: queries.TaskView, who: Actor, granted: frozenset[Permission]) -> bool:
    """Whether ``who`` may work the task: an approval they did not ask for, in one of the roles
    it names, with the decide permission; any other task with the act permission."""
    if task.kind == "approval":
        return (
            Permission.DECIDE in granted
            and requester(task) != who.id
            and any(r in who.roles for r in task.approvers)
        )
    return Permission.ACT in granted


@router.get("/worklist", response_class=HTMLResponse)
async def worklist(request: Request, kind: str = "", age: str = "", assignee: str = "") -> Response:
    signed = await _signed(request, Permission.READ)
    svc = _state(request).services
    tasks = await queries.worklist(svc, signed.who)
    kinds = [k.value for k in TaskKind]  # every kind, open tasks or not
    roles = sorted({r for t in tasks for r in t.approvers})
    extras = await svc.db(lambda s: _extras(s, [t.task_id for t in tasks]))
    now = dt.datetime.now(dt.UTC)
    if kind:
        tasks = [t for t in tasks if t.kind == kind]
    if age in AGES and age:
        oldest = now - dt.timedelta(days=int(age))
        tasks = [t for t in tasks if t.task_id in extras and extras[t.task_id].opened_at <= oldest]
    if assignee == "me":
        tasks = [t for t in tasks if workable_by(t, signed.who, signed.granted)]
    elif assignee:
        tasks = [t for t in tasks if assignee in t.approvers]
    names = await svc.db(_user_names)
    return _page(
        request,
        "worklist.html",
        {
            "tasks": tasks,
            "kinds": kinds,
            "kind": kind,
            "ages": AGES,
            "age": age,
            "roles": roles,
            "assignee": assignee,
            "extras": extras,
            "now": now,
            "names": names,
            "call_results": list(CallResult),
            "purposes": list(ClosingPurpose),
            "what_to_do": WHAT_TO_DO,
            "requester": requester,
            "back": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        },
        signed=signed,
    )
