"""The roles catalogue (``config/roles.yaml``): each staff role, what it may do and approve.

One vocabulary for policies and people: a policy's ``approvers`` must name catalogue roles
(``dunning policy check`` refuses any other), users hold catalogue roles, and a token acts with
its user's roles. Permissions and approver limits come from here only.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from config.settings import PACKAGE_DIR

ROLES_FILE = PACKAGE_DIR / "roles.yaml"
ROLES_FILE_ENV = "DUNNING_ROLES_FILE"
"""Another catalogue for a deployment (a path); default the shipped ``config/roles.yaml``."""

RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]


class Permission(StrEnum):
    """What a role lets its holder do."""

    READ = "read"  # status, account state, worklist, aging
    ACT = "act"  # hold, resume, hardship, plan, settle, request write-off or referral, calls
    DECIDE = "decide"  # approve or deny a task (the policy's approvers and four eyes still apply)
    INTAKE = "intake"  # balances, payments, adjustments
    ADMIN = "admin"  # users and tokens
    POLICY = "policy"  # move running balances to another policy version (the lead owns policies)
    EXPERIMENT = "experiment"  # start, stop and promote champion and challenger experiments


class LimitKind(StrEnum):
    """Amounts an approver's role caps."""

    SETTLEMENT_DISCOUNT = "settlement_discount_cents"
    WRITE_OFF = "write_off_cents"


class RoleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    permissions: frozenset[Permission] = Field(min_length=1)
    limits: dict[LimitKind, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    """The most this role may approve, in cents; a kind not given has no limit."""


class RoleCatalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: dict[RoleName, RoleSpec] = Field(min_length=1)

    def __contains__(self, role: object) -> bool:
        return role in self.roles

    def permissions(self, roles: frozenset[str]) -> frozenset[Permission]:
        """What the holder of ``roles`` may do (unknown roles grant nothing)."""
        granted: set[Permission] = set()
        for role in roles:
            spec = self.roles.get(role)
            if spec is not None:
                granted |= spec.permissions
        return frozenset(granted)

    def limit(self, roles: frozenset[str], kind: LimitKind) -> int | None:
        """The most the holder of ``roles`` may approve of ``kind``: the highest of its roles
        that may decide; ``None`` for no limit; 0 when no role may decide."""
        best: int | None = 0
        for role in sorted(roles):
            spec = self.roles.get(role)
            if spec is None or Permission.DECIDE not in spec.permissions:
                continue
            cap = spec.limits.get(kind)
            if cap is None:
                return None
            best = max(best or 0, cap)
        return best


class RolesFileError(Exception):
    """The roles catalogue cannot be used; the message names the file and field."""


def roles_file() -> Path:
    return Path(os.environ.get(ROLES_FILE_ENV) or ROLES_FILE)


def load_catalogue(path: Path | None = None) -> RoleCatalogue:
    """The catalogue at ``path`` (default ``DUNNING_ROLES_FILE`` or the shipped file), cached.

    Raises:
        RolesFileError: unreadable, not YAML, or not a valid catalogue (naming the field).
    """
    return _load(str((path or roles_file()).resolve()))


@lru_cache(maxsize=8)
def _load(path: str) -> RoleCatalogue:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RolesFileError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise RolesFileError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return RoleCatalogue.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RolesFileError(f"{path}: {where}: {first['msg']}") from exc
