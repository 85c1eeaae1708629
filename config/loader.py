"""Load policy files with their templates, report errors by file, line and field, and hash them.

A policy's identity is the SHA-256 of its validated content together with the text of every
template it uses: change either and it is a new version, which running workflows do not pick up
until ``dunning policy migrate`` moves them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from config.roles import RolesFileError, load_catalogue
from config.settings import POLICY_DIR, TEMPLATE_DIR, load_settings
from models.policy import Channel, ClosingNoticeRules, Policy, Statements

TEMPLATE_SUFFIX = ".j2"


@dataclass(frozen=True)
class PolicyError:
    """One problem in a policy file, located as precisely as the file allows."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(file)'}: {self.message}"


class DocumentError(Exception):
    """A YAML file that cannot be used, with every problem found in it (file, line, field)."""

    def __init__(self, errors: list[PolicyError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class PolicyFileError(DocumentError):
    """A policy file that cannot be used, with every problem found in it."""


def read_document(path: Path, shown: str, error: type[DocumentError]) -> str:
    """A YAML file's text: a missing or unreadable file, or one not in UTF-8 (a spreadsheet's
    Windows-1252, a binary file), raises ``error`` naming the file, never a traceback."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error([PolicyError(shown, None, "", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise error(
            [PolicyError(shown, None, "", f"not UTF-8 text (byte {exc.start}): save it as UTF-8")]
        ) from exc


def parse_document(text: str, shown: str, error: type[DocumentError]) -> tuple[Any, Any]:
    """The YAML node tree (for lines) and the data of ``text``; bad YAML raises ``error``."""
    try:
        return yaml.compose(text), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise error([PolicyError(shown, line, "", f"not valid YAML: {exc}")]) from exc


@dataclass(frozen=True)
class PolicyBundle:
    """A validated policy, the templates it uses, and its content hash."""

    policy: Policy
    templates: dict[str, str] = field(repr=False)
    source: str
    hash: str

    def template(self, name: str, language: str, channel: Channel) -> str:
        """The template source for a step, falling back to the policy's first language."""
        for lang in (language, self.policy.languages[0]):
            key = template_key(name, lang, channel)
            if key in self.templates:
                return self.templates[key]
        raise KeyError(template_key(name, language, channel))

    def document(self) -> dict[str, Any]:
        """What is stored in ``policy_versions``: enough to rebuild the bundle."""
        return {"policy": self.policy.model_dump(mode="json"), "templates": self.templates}

    @classmethod
    def from_document(cls, document: dict[str, Any], source: str = "") -> PolicyBundle:
        policy = Policy.model_validate(document["policy"])
        templates = dict(document["templates"])
        return cls(policy, templates, source, content_hash(policy, templates))


def template_key(name: str, language: str, channel: Channel) -> str:
    return f"{name}/{language}/{channel.value}"


def content_hash(policy: Policy, templates: dict[str, str]) -> str:
    dumped = policy.model_dump(mode="json")
    if policy.statements == Statements():
        del dumped["statements"]  # added later: the policies written before keep their hash
    if policy.thresholds.missed_appointment_fee_cap is None:
        del dumped["thresholds"]["missed_appointment_fee_cap"]  # the same: added later
    if policy.staff.closing_notice == ClosingNoticeRules():
        del dumped["staff"]["closing_notice"]  # the same
    canonical = json.dumps(
        {"policy": dumped, "templates": templates},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def resolve_policy_path(name_or_path: str | Path) -> Path:
    """A path as given, or the name of a policy shipped in ``config/policies``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return POLICY_DIR / f"{name_or_path}.yaml"


def template_dirs(policy_path: Path) -> list[Path]:
    """Templates next to the policy (``templates/`` beside or above it), then the shipped ones."""
    dirs = [policy_path.parent / "templates", policy_path.parent.parent / "templates", TEMPLATE_DIR]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def with_practice_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The policy with the deployment's practice identity where its ``practice`` block is silent.

    The practice identity lives in one place per policy; what a policy leaves out comes from the
    settings (``DUNNING_PRACTICE__*``), so that the stored policy version, and every letter, email,
    text and reply made from it, names the practice completely.
    """
    practice = data.get("practice", {})
    if not isinstance(practice, dict):
        return data  # reported by validation, against the policy's own field
    defaults = load_settings().practice.policy_defaults()
    return data | {"practice": defaults | practice}


def load_policy(name_or_path: str | Path) -> PolicyBundle:
    """Read, validate and hash a policy file and its templates.

    Raises:
        PolicyFileError: with every problem found, each naming the file, line and field path.
    """
    path = resolve_policy_path(name_or_path)
    shown = str(path)
    text = read_document(path, shown, PolicyFileError)
    root, data = parse_document(text, shown, PolicyFileError)
    if not isinstance(data, dict):
        raise PolicyFileError([PolicyError(shown, 1, "", "expected a mapping of policy fields")])
    try:
        policy = Policy.model_validate(with_practice_defaults(data))
    except ValidationError as exc:
        raise PolicyFileError(_locate(shown, root, exc)) from exc

    templates, errors = _collect_templates(policy, path, root, shown)
    errors += _check_approvers(policy, root, shown)
    if errors:
        raise PolicyFileError(errors)
    return PolicyBundle(policy, templates, shown, content_hash(policy, templates))


def _collect_templates(
    policy: Policy, path: Path, root: yaml.Node | None, shown: str
) -> tuple[dict[str, str], list[PolicyError]]:
    dirs = template_dirs(path)
    templates: dict[str, str] = {}
    errors: list[PolicyError] = []
    uses: list[tuple[tuple[Any, ...], str, list[Channel]]] = [
        (("steps", i, "template"), step.template, step.channels)
        for i, step in enumerate(policy.steps)
    ]
    plans = policy.staff.plans
    uses.append(
        (("staff", "plans", "reminder_template"), plans.reminder_template, plans.reminder_channels)
    )
    # The one closing notice after a cease-communication request: a letter, in every language.
    uses.append(
        (
            ("staff", "closing_notice", "template"),
            policy.staff.closing_notice.template,
            [Channel.LETTER],
        )
    )
    for loc, template, channels in uses:
        for channel in channels:
            for lang in policy.languages:
                key = template_key(template, lang, channel)
                if key in templates:
                    continue
                found = next(
                    (
                        d / f"{key}{TEMPLATE_SUFFIX}"
                        for d in dirs
                        if (d / f"{key}{TEMPLATE_SUFFIX}").is_file()
                    ),
                    None,
                )
                if found is None:
                    errors.append(
                        PolicyError(
                            shown,
                            _line_of(root, loc),
                            _dotted(loc),
                            f"missing template {key}{TEMPLATE_SUFFIX} (looked in "
                            + ", ".join(str(d) for d in dirs)
                            + ")",
                        )
                    )
                    continue
                templates[key] = found.read_text(encoding="utf-8")
    return dict(sorted(templates.items())), errors


def _check_approvers(policy: Policy, root: yaml.Node | None, shown: str) -> list[PolicyError]:
    """Every approver a policy names must be a role of the catalogue (``config/roles.yaml``)."""
    try:
        catalogue = load_catalogue()
    except RolesFileError as exc:
        return [PolicyError(shown, None, "", f"roles catalogue: {exc}")]
    named: list[tuple[tuple[Any, ...], list[str]]] = [
        (("steps", i, "approval", "approvers"), step.approval.approvers)
        for i, step in enumerate(policy.steps)
        if step.approval is not None
    ]
    staff = policy.staff
    for key, approval in (
        ("settlement", staff.settlement),
        ("write_off", staff.write_off),
        ("agency_referral", staff.agency_referral),
    ):
        named.append((("staff", key, "approvers"), approval.approvers))
    if staff.closing_notice.approvers:
        named.append((("staff", "closing_notice", "approvers"), staff.closing_notice.approvers))
    errors = []
    for loc, approvers in named:
        for j, role in enumerate(approvers):
            if role not in catalogue:
                errors.append(
                    PolicyError(
                        shown,
                        _line_of(root, (*loc, j)),
                        _dotted((*loc, j)),
                        f"unknown role {role!r}; the roles catalogue has "
                        + ", ".join(sorted(catalogue.roles)),
                    )
                )
    return errors


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _locate(shown: str, root: yaml.Node | None, exc: ValidationError) -> list[PolicyError]:
    errors = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "enum" and "expected" in err.get("ctx", {}):
            message = f"got {err['input']!r}; expected {err['ctx']['expected']}"
        # A message of a model validator that names its own field path is more precise.
        path = _dotted(loc)
        if (
            ": " in message
            and message.split(": ", 1)[0].replace(".", "").replace("_", "").isalnum()
        ):
            sub, message = message.split(": ", 1)
            parts, own = path.split(".") if path else [], sub.split(".")
            # A nested model names its own field (``allowed_hours: ...``) that loc already ends in.
            if parts[-len(own) :] != own:
                path = f"{path}.{sub}" if path else sub
            loc = tuple(int(p) if p.isdigit() else p for p in path.split("."))
        errors.append(PolicyError(shown, _line_of(root, loc), path, message))
    return errors


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest YAML node that ``loc`` reaches."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if nxt is None:
                break
            node = nxt
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def field_line(source: str | Path, loc: tuple[Any, ...]) -> int | None:
    """The line of field ``loc`` (``("steps", 2, "template")``) in policy file ``source``."""
    try:
        root = yaml.compose(Path(source).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return _line_of(root, loc)


def shipped_policies() -> list[Path]:
    return sorted(POLICY_DIR.glob("*.yaml"))
