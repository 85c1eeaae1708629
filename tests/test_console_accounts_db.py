"""The console's account look-ups on the real database: search by account number, guarantor name
or phone (scoped to this test's own rows by a unique name), a guarantor's contact, the plan form's
suggestion and the installments it reads; the worklist's "for me" filter and where deciding comes
back to."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from api.console import _worklist_back
from api.console.account_pages import BadField, installments, suggested_plan
from api.console.worklist_page import workable_by
from models.orm import Account, AccountStatus, Guarantor
from services import accounts
from services.identity import Actor, permissions
from services.queries import TaskView
from tests.factories import UNLOCATED_PHONE, UNLOCATED_ZIP

NOW = dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC)


def _account(session: Session, first: str, last: str, phone: str | None) -> str:
    tag = uuid.uuid4().hex[:8].upper()
    guarantor = Guarantor(
        external_ref=f"G-{tag}",
        first_name=first,
        last_name=last,
        phone=phone,
        address_line1="1 Example Way",
        city="Springfield",
        region="NY",
        postal_code=UNLOCATED_ZIP,
    )
    session.add(guarantor)
    session.flush()
    number = f"S-{tag}"
    session.add(
        Account(
            account_number=number,
            guarantor_id=guarantor.id,
            policy_name="physician",
            status=AccountStatus.OPEN,
            balance_cents=5500,
            opened_at=NOW,
        )
    )
    session.flush()
    return number


def test_search_by_number_name_and_phone(db_session: Session) -> None:
    last = f"Synthetic{uuid.uuid4().hex[:6]}"
    # A phone no other row of the shared database has: 555 numbers with a random line.
    line = f"{uuid.uuid4().int % 10**7:07d}"
    ada = _account(db_session, "Ada", last, f"+1 (500) {line[:3]}-{line[3:]}")
    bob = _account(db_session, "Bob", last, UNLOCATED_PHONE)
    carl = _account(db_session, "Carl", f"Other{uuid.uuid4().hex[:6]}", None)

    def numbers(text: str) -> set[str]:
        return {f.number for f in accounts.search(db_session, text)}

    assert numbers(ada) == {ada}
    assert numbers(ada[:6].lower()) >= {ada}  # a prefix, in any case
    assert numbers(last) == {ada, bob}  # the last name finds both of the family
    assert numbers(f"ada {last}".upper()) == {ada}  # "first last"
    assert numbers(f"{last}, Bob") == {bob}  # "last, first"
    assert numbers(f"500-{line[:3]}-{line[3:]}") == {ada}  # the phone's digits, any punctuation
    assert numbers(line) == {ada}
    assert ada not in numbers(line[-3:])  # three digits are too few for a phone search
    assert carl not in numbers(line)
    assert numbers(f"{last}_") == set()  # "_" is a character, not a wildcard
    found = {f.number: f for f in accounts.search(db_session, last)}
    assert found[ada].guarantor == f"Ada {last}" and found[ada].balance_cents == 5500
    assert accounts.search(db_session, "   ") == []


def test_contact_and_messages_of_an_account(db_session: Session) -> None:
    number = _account(db_session, "Ada", "Synthetic", UNLOCATED_PHONE)
    who = accounts.contact(db_session, number)
    assert who is not None
    assert who.name == "Ada Synthetic" and who.phone == UNLOCATED_PHONE
    assert who.address == ["1 Example Way", f"Springfield, NY {UNLOCATED_ZIP}"]
    assert accounts.contact(db_session, "NO-SUCH-ACCOUNT") is None
    assert accounts.sent(db_session, number) == []


def test_plan_form_reads_installments_and_names_the_bad_line() -> None:
    items = installments("2027-01-15 27.50\n\n2027-02-15=$27.50\n")
    assert [(i.due_on.isoformat(), i.amount_cents) for i in items] == [
        ("2027-01-15", 2750),
        ("2027-02-15", 2750),
    ]
    with pytest.raises(BadField, match=r"^installments: line 2 'next month 10'"):
        installments("2027-01-15 10\nnext month 10")
    with pytest.raises(BadField, match=r"^installments: line 1: the amount must be more"):
        installments("2027-01-15 0")
    with pytest.raises(BadField, match=r"^installments: give at least one line"):
        installments("  \n")


@pytest.mark.parametrize("balance", [5500, 100, 1, 1_000_001])
def test_suggested_plan_adds_up_to_the_balance(balance: int) -> None:
    text = suggested_plan(balance, dt.date(2026, 12, 31))
    items = installments(text)
    assert sum(i.amount_cents for i in items) == balance
    dates = [i.due_on for i in items]
    assert dates == sorted(set(dates)) and dates[0] == dt.date(2027, 1, 7)
    assert suggested_plan(0, dt.date(2026, 12, 31)) == ""


@pytest.mark.parametrize(
    ("sent", "back"),
    [
        ("/console/worklist?kind=call&age=7", "/console/worklist?kind=call&age=7"),
        ("https://elsewhere.example.test/console/worklist", "/console/worklist"),
        ("//elsewhere.example.test/console/worklist", "/console/worklist"),
        ("/console/worklist//elsewhere.example.test", "/console/worklist"),
        ("/console/accounts/T-1", "/console/worklist"),
        ("", "/console/worklist"),
    ],
)
def test_deciding_comes_back_only_to_the_worklist(sent: str, back: str) -> None:
    assert _worklist_back(FormData([("back", sent)])) == back


def _task(kind: str, approvers: list[str], requested_by: str = "system") -> TaskView:
    return TaskView(
        task_id=str(uuid.uuid4()),
        account_number="T-1",
        kind=kind,
        title="synthetic",
        approvers=approvers,
        status="open",
        requested_by=requested_by,
    )


def test_what_i_may_work_follows_roles_permissions_and_four_eyes() -> None:
    lead = Actor(id="u-lead", name="lead", roles=frozenset({"billing_lead", "supervisor"}))
    clerk = Actor(id="u-clerk", name="clerk", roles=frozenset({"staff"}))
    admin = Actor(id="u-admin", name="admin", roles=frozenset({"admin"}))
    approval = _task("approval", ["supervisor", "manager"], requested_by="u-clerk")
    own = _task("approval", ["supervisor"], requested_by="u-lead")
    directors = _task("approval", ["director"])
    call = _task("call", [])
    for who, expected in (
        (lead, [True, False, False, True]),  # never their own request; only their roles' tasks
        (clerk, [False, False, False, True]),  # staff may act, not decide
        (admin, [False, False, False, False]),  # read only
    ):
        got = [workable_by(t, who, permissions(who)) for t in (approval, own, directors, call)]
        assert got == expected, who.name
