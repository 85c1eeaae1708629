"""The policies a practice runs, for reading: files, stored versions, and who is pinned to which.

What the console's policy pages show (and any later door): the policy files of the configured
folders (``settings.practice.policy_dirs``) with their check result (the same checks as
``dunning policy check``), every version a workflow was started on (``policy_versions``), and the
open balances following each version. Previews, diffs and migrations themselves stay in
:mod:`services.policy`; this module only finds the bundles and the accounts they apply to.

Which version a balance follows is known exactly by its workflow (``get_status``); the ledger
knows it too, without asking Temporal for every account: the version of its latest migration
(audit ``policy_migrated``) or of its latest message (``communications.policy_hash``), whichever
is later; before either, the version of its policy stored when the account was created.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from activities.rendering import check_templates
from config.loader import (
    PolicyBundle,
    PolicyFileError,
    load_policy,
    resolve_policy_path,
    template_dirs,
)
from config.settings import Settings
from models.calendars import calendar_warnings
from models.orm import Account, AccountStatus, AuditEvent, Communication, PolicyVersion
from models.payloads import ChannelStatus, ContactProfile
from models.policy import Channel, Policy
from services.errors import Refused
from services.policy import PreviewOptions
from workflows.contract import Rejection
from workflows.decisions import zone

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


@dataclass
class CheckResult:
    """``dunning policy check`` of one file: its text, the bundle when usable, every problem."""

    name: str
    path: Path
    text: str
    bundle: PolicyBundle | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.bundle is not None and not self.errors


@dataclass
class VersionView:
    """One stored version of a policy and the open balances that follow it."""

    hash: str
    stored_at: dt.datetime | None
    """None: the file's version, on which no balance has started yet."""
    source: str
    accounts: int
    current: bool
    """The version of the policy file as it is now."""


@dataclass
class PolicySummary:
    name: str
    check: CheckResult | None
    """None when no file of that name is in the policy folders (only stored versions)."""
    versions: list[VersionView]

    @property
    def pinned(self) -> int:
        return sum(v.accounts for v in self.versions)


@dataclass(frozen=True)
class PinnedAccount:
    number: str
    balance_cents: int
    opened_at: dt.datetime
    since: dt.datetime | None
    """When the ledger last saw it on this version (a message or a migration)."""


def check_file(file: str | Path, today: dt.date | None = None) -> CheckResult:
    """``dunning policy check`` of one file (or shipped policy name): load and validate it,
    render every template with synthetic data, and warn about its calendar.

    Remembered while the file, its templates and the day stay the same (rendering every template
    in every tone takes most of a second): the console checks on each page it shows.
    """
    path = resolve_policy_path(file)
    try:
        stat = path.stat()
        templates = [p.stat().st_mtime_ns for d in template_dirs(path) for p in d.rglob("*.j2")]
    except OSError:
        return _check(path, today or dt.date.today())
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, max(templates, default=0))
    return _checked(key, today or dt.date.today())


@lru_cache(maxsize=64)
def _checked(key: tuple[str, int, int, int], today: dt.date) -> CheckResult:
    return _check(Path(key[0]), today)


def _check(path: Path, today: dt.date) -> CheckResult:
    try:
        bundle = load_policy(path)
    except PolicyFileError as exc:
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        return CheckResult(path.stem, path, text, None, [str(e) for e in exc.errors])
    text = path.read_text(encoding="utf-8")
    errors = [str(e) for e in check_templates(bundle)]
    warnings = calendar_warnings(bundle.policy.contact, today)
    return CheckResult(path.stem, path, text, None if errors else bundle, errors, warnings)


def policy_files(settings: Settings) -> dict[str, Path]:
    """Each policy of the configured folders by its ``name`` (what accounts and stored versions
    are named by; the file's stem when it has none) and its file (the first folder wins)."""
    found: dict[str, Path] = {}
    for folder in settings.practice.policy_dirs:
        for path in sorted(Path(folder).glob("*.yaml")):
            found.setdefault(_declared_name(path), path)
    return found


def _declared_name(path: Path) -> str:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return path.stem
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and _valid_name(name) else path.stem


def _valid_name(name: str) -> bool:
    return bool(name) and len(name) <= 64 and set(name) <= NAME_CHARS


def pinned_versions(session: Session, name: str) -> dict[uuid.UUID, tuple[str, dt.datetime | None]]:
    """For each open balance on policy ``name``: the version hash it follows, and since when."""
    accounts = session.execute(
        select(Account.id, Account.created_at).where(
            Account.policy_name == name, Account.status == AccountStatus.OPEN
        )
    ).all()
    if not accounts:
        return {}
    ids = [a.id for a in accounts]
    seen: dict[uuid.UUID, tuple[dt.datetime, str]] = {}
    messages = session.execute(
        select(Communication.account_id, Communication.created_at, Communication.policy_hash)
        .where(Communication.account_id.in_(ids))
        .order_by(Communication.account_id, Communication.created_at.desc())
    ).all()
    for account_id, at, version in messages:
        seen.setdefault(account_id, (at, version))  # the latest comes first
    migrations = session.execute(
        select(AuditEvent.account_id, AuditEvent.at, AuditEvent.detail["to"].astext)
        .where(
            AuditEvent.account_id.in_(ids),
            AuditEvent.action == "policy_migrated",
            AuditEvent.detail["outcome"].astext == "done",
        )
        .order_by(AuditEvent.account_id, AuditEvent.at.desc())
    ).all()
    latest: set[uuid.UUID] = set()
    for account_id, at, target in migrations:
        if account_id is None or not target or account_id in latest:
            continue
        latest.add(account_id)
        known = seen.get(account_id)
        if known is None or at >= known[0]:
            seen[account_id] = (at, target.rsplit("@", 1)[-1])
    stored = session.execute(
        select(PolicyVersion.hash, PolicyVersion.created_at)
        .where(PolicyVersion.name == name)
        .order_by(PolicyVersion.created_at)
    ).all()
    out: dict[uuid.UUID, tuple[str, dt.datetime | None]] = {}
    for account_id, created in accounts:
        if account_id in seen:
            at, version = seen[account_id]
            out[account_id] = (version, at)
            continue
        before = [v for v, at in stored if at <= created]
        if before or stored:
            out[account_id] = ((before or [stored[0].hash])[-1], None)
    return out


def summaries(session: Session, settings: Settings) -> list[PolicySummary]:
    """Every policy of the folders or of a stored version, with its versions and balances."""
    files = policy_files(settings)
    stored = session.scalars(select(PolicyVersion).order_by(PolicyVersion.created_at)).all()
    names = sorted(set(files) | {v.name for v in stored})
    out: list[PolicySummary] = []
    for name in names:
        check = check_file(files[name]) if name in files else None
        out.append(PolicySummary(name, check, _versions(session, name, stored, check)))
    return out


def summary(session: Session, settings: Settings, name: str) -> PolicySummary:
    """One policy: its file's check and its versions.

    Raises:
        Refused: (invalid request) no file and no stored version of that name.
    """
    files = policy_files(settings) if _valid_name(name) else {}
    stored = session.scalars(
        select(PolicyVersion).where(PolicyVersion.name == name).order_by(PolicyVersion.created_at)
    ).all()
    if name not in files and not stored:
        raise Refused(Rejection.INVALID_REQUEST, f"policy: no policy named {name!r}")
    check = check_file(files[name]) if name in files else None
    return PolicySummary(name, check, _versions(session, name, stored, check))


def _versions(
    session: Session,
    name: str,
    stored: Sequence[PolicyVersion],
    check: CheckResult | None,
) -> list[VersionView]:
    pinned = pinned_versions(session, name)
    counts: dict[str, int] = {}
    for version, _ in pinned.values():
        counts[version] = counts.get(version, 0) + 1
    current = check.bundle.hash if check and check.bundle else None
    views = [
        VersionView(v.hash, v.created_at, v.source_path, counts.get(v.hash, 0), v.hash == current)
        for v in stored
        if v.name == name
    ]
    if current and all(v.hash != current for v in views) and check is not None:
        views.append(VersionView(current, None, str(check.path), counts.get(current, 0), True))
    never = dt.datetime.max.replace(tzinfo=dt.UTC)
    views.sort(key=lambda v: v.stored_at or never, reverse=True)
    return views


def bundle(session: Session, settings: Settings, name: str, version: str = "") -> PolicyBundle:
    """Policy ``name`` at ``version`` (a stored hash, or a unique prefix of it); default its file.

    Raises:
        Refused: (invalid request) unknown policy or version, or a file that does not check.
    """
    if not version:
        found = summary(session, settings, name)
        if found.check is None:
            raise Refused(
                Rejection.INVALID_REQUEST,
                f"version: policy {name!r} has no file in the policy folders; choose a version",
            )
        if found.check.bundle is None:
            raise Refused(
                Rejection.POLICY_UNUSABLE,
                f"policy: {name} does not pass its check ({len(found.check.errors)} problem(s))",
            )
        return found.check.bundle
    if not all(c in "0123456789abcdef" for c in version) or len(version) < 6:
        raise Refused(Rejection.INVALID_REQUEST, f"version: {version!r} is not a version hash")
    rows = session.scalars(
        select(PolicyVersion).where(
            PolicyVersion.name == name, PolicyVersion.hash.startswith(version)
        )
    ).all()
    if len(rows) != 1:
        files = policy_files(settings) if _valid_name(name) else {}
        if name in files:
            check = check_file(files[name])
            if check.bundle is not None and check.bundle.hash.startswith(version):
                return check.bundle
        what = "no" if not rows else "more than one"
        raise Refused(
            Rejection.INVALID_REQUEST, f"version: {what} version {version} of policy {name!r}"
        )
    return PolicyBundle.from_document(rows[0].document, rows[0].source_path)


def pinned_accounts(session: Session, name: str, version: str) -> list[PinnedAccount]:
    """The open balances following version ``version`` (a full hash) of policy ``name``."""
    pinned = {k: v for k, v in pinned_versions(session, name).items() if v[0] == version}
    if not pinned:
        return []
    rows = session.execute(
        select(Account.id, Account.account_number, Account.balance_cents, Account.opened_at)
        .where(Account.id.in_(list(pinned)))
        .order_by(Account.account_number)
    ).all()
    return [
        PinnedAccount(r.account_number, r.balance_cents, r.opened_at, pinned[r.id][1]) for r in rows
    ]


def document_text(found: PolicyBundle) -> str:
    """A stored version's policy as YAML (its file may have changed or gone since)."""
    return yaml.safe_dump(
        found.policy.model_dump(mode="json", exclude_defaults=True),
        sort_keys=False,
        allow_unicode=True,
    )


def preview_options(
    policy: Policy,
    balance_cents: int,
    first_statement: dt.date,
    time_zone: str,
    *,
    state: str = "",
    language: str = "",
    sms_consent: bool = True,
) -> PreviewOptions:
    """A preview of a balance from a first statement on ``first_statement`` at the policy's send
    time, for a patient in ``time_zone`` (and ``state``, whose rules then apply, as
    ``dunning policy preview --state``) with every channel open, texts only with ``sms_consent``.

    Raises:
        Refused: (invalid request) naming the field: a balance not above zero, an unknown zone,
            a state that is not two letters, a language the policy does not declare.
    """
    if balance_cents <= 0:
        raise Refused(Rejection.INVALID_REQUEST, "balance: must be more than $0.00")
    name = time_zone or policy.contact.default_patient_time_zone
    try:
        zone(name)
    except Exception as exc:  # zoneinfo raises several kinds for a bad name
        raise Refused(
            Rejection.INVALID_REQUEST,
            f"time zone: unknown {name!r}; use an IANA name such as America/Chicago",
        ) from exc
    state = state.strip().upper()
    if state and (len(state) != 2 or not state.isalpha()):
        raise Refused(Rejection.INVALID_REQUEST, f"state: two letters such as MN, got {state!r}")
    language = language or policy.languages[0]
    if language not in policy.languages:
        raise Refused(
            Rejection.INVALID_REQUEST,
            f"language: policy {policy.name} has {', '.join(policy.languages)}, not {language!r}",
        )
    channels = {c: ChannelStatus(reachable=True) for c in Channel}
    if not sms_consent:
        channels[Channel.SMS] = ChannelStatus(
            reachable=True, consent=False, reason="no recorded consent (TCPA)"
        )
    tz = zone(policy.contact.practice_time_zone)
    first = dt.datetime.combine(first_statement, policy.contact.send_time, tzinfo=tz)
    profile = ContactProfile(
        time_zone=name, language=language, channels=channels, state=state or None
    )
    at = first.astimezone(dt.UTC)
    return PreviewOptions(balance_cents, at, profile, at)
