"""Who acts: a verified staff user, an integration, or the engine itself.

Every use case in ``services`` takes an :class:`Actor`. Front doors build it from a verified
credential (an API token, the CLI's login token), never from a name typed by the caller. Four
eyes compares :attr:`Actor.id`; approver checks compare :attr:`Actor.roles`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from config.roles import LimitKind, Permission, RoleCatalogue, load_catalogue
from models.actions import ApprovalKind, ApprovalTask


class ActorKind(StrEnum):
    USER = "user"
    INTEGRATION = "integration"
    SYSTEM = "system"


class Actor(BaseModel):
    """A verified identity and the roles it holds."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Stable identity (a user's or an integration's id): what four eyes compares."""
    name: str
    """Shown in the audit trail and the worklist."""
    kind: ActorKind = ActorKind.USER
    roles: frozenset[str] = frozenset()

    def has_role(self, role: str) -> bool:
        return role in self.roles


SYSTEM = Actor(id="system", name="dunning", kind=ActorKind.SYSTEM)
"""The engine itself (reconciliation, schedules, webhooks it verified)."""


# -- what an actor may do: pure functions over the roles catalogue (config/roles.yaml) --


def permissions(actor: Actor, catalogue: RoleCatalogue | None = None) -> frozenset[Permission]:
    """What ``actor`` may do: the union of its roles' permissions; an integration only intake."""
    if actor.kind is ActorKind.SYSTEM:
        return frozenset(Permission)
    if actor.kind is ActorKind.INTEGRATION:
        return frozenset({Permission.INTAKE})
    return (catalogue or load_catalogue()).permissions(actor.roles)


_LIMITED: dict[ApprovalKind, LimitKind] = {
    ApprovalKind.SETTLEMENT: LimitKind.SETTLEMENT_DISCOUNT,
    ApprovalKind.WRITE_OFF: LimitKind.WRITE_OFF,
}


def approval_limit(
    actor: Actor, kind: ApprovalKind, catalogue: RoleCatalogue | None = None
) -> int | None:
    """The most ``actor`` may approve of ``kind``, in cents; ``None`` for no limit.

    Settlements are capped by their discount (balance minus the amount offered), write-offs by
    the amount written off; gated steps and referrals carry no amount. The highest limit among the
    actor's roles that may decide applies; 0 when none may decide.
    """
    limit_kind = _LIMITED.get(kind)
    if limit_kind is None:
        return None
    return (catalogue or load_catalogue()).limit(actor.roles, limit_kind)


def approval_amount(task: ApprovalTask, balance_cents: int) -> int | None:
    """What approving ``task`` would cost, in cents, against the limits; ``None``: no amount."""
    if task.kind is ApprovalKind.WRITE_OFF:
        return task.amount_cents if task.amount_cents is not None else balance_cents
    if task.kind is ApprovalKind.SETTLEMENT and task.settlement is not None:
        return max(balance_cents - task.settlement.amount_cents, 0)
    return None


class OverLimit(Exception):
    """The approver's roles may not approve this much (the roles catalogue's limits)."""

    kind = "OverLimit"


def check_approval_limit(
    actor: Actor, task: ApprovalTask, balance_cents: int, catalogue: RoleCatalogue | None = None
) -> None:
    """Refuse an approval above the actor's limit for the task's kind.

    Raises:
        OverLimit: naming the amount and the limit (cents).
    """
    amount = approval_amount(task, balance_cents)
    limit = approval_limit(actor, task.kind, catalogue)
    if amount is not None and limit is not None and amount > limit:
        raise OverLimit(
            f"{task.kind.value}: {amount} cents is above your approval limit of {limit} cents"
        )


def decision_role(actor: Actor, approvers: list[str]) -> str | None:
    """The role in which ``actor`` decides a task that ``approvers`` may decide (in their order);
    ``None`` when the actor holds none of them."""
    return next((role for role in approvers if role in actor.roles), None)
