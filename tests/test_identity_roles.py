"""The roles catalogue: policies must name its roles; permissions and approver limits by role."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from config.loader import shipped_policies
from config.roles import ROLES_FILE, LimitKind, Permission, RolesFileError, load_catalogue
from models.actions import ApprovalKind
from services.identity import Actor, ActorKind, approval_limit, permissions

runner = CliRunner()

POLICY = """\
name: t
practice:
  name: Synthetic Clinic
  phone: (555) 010-9999
  financial_assistance_summary: Free or discounted care by household income.
staff:
  write_off: {approvers: [supervisor, head-honcho]}
steps:
  - id: statement-1
    day: 0
    channels: [letter]
    template: statement
  - id: final
    day: 30
    channels: [letter]
    template: final-notice
    kind: final_notice
    approval: {approvers: [office-manager, dentistt]}
"""


def test_every_role_the_shipped_and_test_policies_name_is_in_the_catalogue() -> None:
    catalogue = load_catalogue()
    named: set[str] = set()
    paths = [*shipped_policies(), *Path("tests/policies").glob("*.yaml")]
    for path in paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for step in data.get("steps", []):
            named |= set((step.get("approval") or {}).get("approvers", []))
        for rule in (data.get("staff") or {}).values():
            if isinstance(rule, dict):
                named |= set(rule.get("approvers", []))
    assert {"office-manager", "dentist", "financial-counselor", "supervisor"} <= named
    assert named <= set(catalogue.roles), named - set(catalogue.roles)


def test_policy_check_rejects_an_unknown_role_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    result = runner.invoke(app, ["policy", "check", str(path)])
    assert result.exit_code != 0
    lines = POLICY.splitlines()
    gate = next(i for i, line in enumerate(lines, 1) if "dentistt" in line)
    staff = next(i for i, line in enumerate(lines, 1) if "head-honcho" in line)
    assert f"{path}:{gate}: steps.1.approval.approvers.1: unknown role 'dentistt'" in result.output
    assert f"{path}:{staff}: staff.write_off.approvers.1: unknown role 'head-honcho'" in (
        result.output
    )
    # the known roles on the same lines are not reported
    assert "'office-manager'" not in result.output
    assert "'supervisor'" not in result.output


def test_policy_check_passes_once_the_roles_are_known(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        POLICY.replace("dentistt", "dentist").replace("head-honcho", "manager"), encoding="utf-8"
    )
    result = runner.invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 0, result.output


def test_a_deployment_catalogue_replaces_the_shipped_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roles = tmp_path / "roles.yaml"
    roles.write_text(
        "roles:\n  office-manager: {permissions: [read, act, decide]}\n"
        "  dentistt: {permissions: [read, decide]}\n"
        "  head-honcho: {permissions: [read, decide]}\n"
        "  supervisor: {permissions: [decide]}\n  manager: {permissions: [decide]}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("DUNNING_ROLES_FILE", str(roles))
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    result = runner.invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 0, result.output


def test_a_broken_catalogue_names_its_file_and_field(tmp_path: Path) -> None:
    roles = tmp_path / "roles.yaml"
    roles.write_text("roles:\n  clerk: {permissions: [read, fly]}\n", encoding="utf-8")
    with pytest.raises(RolesFileError, match=r"roles\.yaml: roles\.clerk\.permissions"):
        load_catalogue(roles)


def _user(*roles: str) -> Actor:
    return Actor(id="u-1", name="pat", roles=frozenset(roles))


def test_permissions_are_the_union_of_the_roles_entries() -> None:
    assert permissions(_user("staff")) == {Permission.READ, Permission.ACT}
    assert Permission.DECIDE in permissions(_user("staff", "dentist"))
    assert Permission.ADMIN in permissions(_user("billing_lead"))
    assert permissions(_user("no-such-role")) == frozenset()
    integration = Actor(id="i-1", name="pms", kind=ActorKind.INTEGRATION)
    assert permissions(integration) == {Permission.INTAKE}


def test_approval_limits_come_from_the_catalogue() -> None:
    spec = yaml.safe_load(ROLES_FILE.read_text(encoding="utf-8"))["roles"]
    office = spec["office-manager"]["limits"]
    assert (
        approval_limit(_user("office-manager"), ApprovalKind.WRITE_OFF)
        == office[LimitKind.WRITE_OFF.value]
    )
    assert (
        approval_limit(_user("office-manager"), ApprovalKind.SETTLEMENT)
        == office[LimitKind.SETTLEMENT_DISCOUNT.value]
    )
    # the highest of several roles; a role without a limit has none
    assert (
        approval_limit(_user("supervisor", "manager"), ApprovalKind.WRITE_OFF)
        == (spec["manager"]["limits"][LimitKind.WRITE_OFF.value])
    )
    assert approval_limit(_user("office-manager", "dentist"), ApprovalKind.WRITE_OFF) is None
    # a role that may not decide approves nothing; gates and referrals carry no amount
    assert approval_limit(_user("staff"), ApprovalKind.WRITE_OFF) == 0
    assert approval_limit(_user("supervisor"), ApprovalKind.STEP) is None
