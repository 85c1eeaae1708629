"""Facts staff learn of, over HTTP: thin adapters over ``services.facts``.

Bankruptcy, death, attorney representation, cease communication, a returned letter, a corrected
address, email or phone, consent given or withdrawn. Each is written to PostgreSQL, audited with
the token's identity, then the balance's workflow reacts at once.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import Field

from api.auth import Permission, Principal, require
from api.routes.staff import ERRORS
from api.schemas import AccountNumber, Strict, Text
from api.state import State
from models.policy import Channel
from services import facts
from services.facts import Address, AttorneyContact, ConsentSource, FactRecorded

router = APIRouter(tags=["facts"], prefix="/accounts/{account_number}/facts")
Actor = Annotated[Principal, Depends(require(Permission.ACT))]


class BankruptcyIn(Strict):
    filed_on: dt.date
    chapter: int = Field(strict=True, description="7, 9, 11, 12, 13 or 15")
    case_number: Text | None = Field(default=None, max_length=64)


class DeathIn(Strict):
    died_on: dt.date | None = None


class CeaseIn(Strict):
    received_on: dt.date | None = None


class AddressIn(Strict, Address):
    pass


class AttorneyIn(Strict, AttorneyContact):
    pass


class EmailIn(Strict):
    email: Text = Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class PhoneIn(Strict):
    phone: Text = Field(pattern=r"^\+?[0-9 ()-]{7,20}$")


class ConsentIn(Strict):
    channel: Channel
    given: bool = Field(strict=True, description="true: consent given; false: withdrawn")
    via: ConsentSource


@router.post("/bankruptcy", response_model=FactRecorded, responses=ERRORS)
async def bankruptcy(
    account_number: AccountNumber, body: BankruptcyIn, state: State, who: Actor
) -> FactRecorded:
    """A bankruptcy filing: the automatic stay stops all collection at once."""
    return await facts.bankruptcy(
        state.services,
        who.actor(),
        account_number,
        filed_on=body.filed_on,
        chapter=body.chapter,
        case_number=body.case_number,
    )


@router.post("/death", response_model=FactRecorded, responses=ERRORS)
async def death(
    account_number: AccountNumber, body: DeathIn, state: State, who: Actor
) -> FactRecorded:
    """The guarantor died: contact ends; the account goes to the estate queue."""
    return await facts.death(state.services, who.actor(), account_number, died_on=body.died_on)


@router.post("/attorney", response_model=FactRecorded, responses=ERRORS)
async def attorney(
    account_number: AccountNumber, body: AttorneyIn, state: State, who: Actor
) -> FactRecorded:
    """Attorney representation: contact only the attorney (Reg F 1006.6(b)(2))."""
    contact = AttorneyContact.model_validate(body.model_dump())
    return await facts.attorney(state.services, who.actor(), account_number, contact)


@router.post("/cease-communication", response_model=FactRecorded, responses=ERRORS)
async def cease_communication(
    account_number: AccountNumber, body: CeaseIn, state: State, who: Actor
) -> FactRecorded:
    """A written request to cease communication (Reg F 1006.6(c)): the ladder stops; a task for
    the one closing notice allowed opens."""
    return await facts.cease_communication(
        state.services, who.actor(), account_number, received_on=body.received_on
    )


@router.post("/letter-returned", response_model=FactRecorded, responses=ERRORS)
async def letter_returned(account_number: AccountNumber, state: State, who: Actor) -> FactRecorded:
    """The post office returned a letter: letters stop until the address is corrected."""
    return await facts.letter_returned(state.services, who.actor(), account_number)


@router.post("/address", response_model=FactRecorded, responses=ERRORS)
async def address(
    account_number: AccountNumber, body: AddressIn, state: State, who: Actor
) -> FactRecorded:
    """A corrected postal address: stored, and letters may go again."""
    corrected = Address.model_validate(body.model_dump())
    return await facts.address_corrected(state.services, who.actor(), account_number, corrected)


@router.post("/email", response_model=FactRecorded, responses=ERRORS)
async def email(
    account_number: AccountNumber, body: EmailIn, state: State, who: Actor
) -> FactRecorded:
    """A corrected email address: stored, and email may go again."""
    return await facts.email_corrected(state.services, who.actor(), account_number, body.email)


@router.post("/phone", response_model=FactRecorded, responses=ERRORS)
async def phone(
    account_number: AccountNumber, body: PhoneIn, state: State, who: Actor
) -> FactRecorded:
    """A corrected phone number: stored; calls (and texts, with consent) may go again."""
    return await facts.phone_corrected(state.services, who.actor(), account_number, body.phone)


@router.post("/consent", response_model=FactRecorded, responses=ERRORS)
async def consent(
    account_number: AccountNumber, body: ConsentIn, state: State, who: Actor
) -> FactRecorded:
    """Consent given or withdrawn by phone, at the front desk or in writing: effective now."""
    return await facts.consent(
        state.services, who.actor(), account_number, body.channel, given=body.given, via=body.via
    )
