"""Champion and challenger experiments over HTTP: thin adapters over
``services.experiments.service``. Reading needs ``read``; starting, stopping and promoting need
``experiment`` (the billing lead's)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.auth import Permission, Principal, require
from api.schemas import Problem
from api.state import State
from services import policy as policy_ops
from services.errors import Refused
from services.experiments import chart
from services.experiments import service as experiments
from services.experiments.service import (
    ExperimentFileError,
    ExperimentReport,
    ExperimentSummary,
    Promotion,
)
from workflows.contract import Rejection

router = APIRouter(tags=["experiments"])
Reader = Annotated[Principal, Depends(require(Permission.READ))]
Lead = Annotated[Principal, Depends(require(Permission.EXPERIMENT))]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem, "description": "no such experiment"},
    409: {"model": Problem, "description": "the experiment's state refuses it; kind names it"},
    422: {"model": Problem},
}


class StopIn(BaseModel):
    reason: str = Field(min_length=1, max_length=300)
    arm: str | None = Field(default=None, description="stop this challenger only")


class PromoteIn(BaseModel):
    arm: str = Field(min_length=1, max_length=64)


class MigrationPreview(BaseModel):
    account_number: str
    from_policy: str
    resumes_at: str
    problem: str


class PromotionOut(BaseModel):
    promotion: Promotion
    preview: list[MigrationPreview]
    """Where each of the champion's running balances would resume on the promoted policy (the
    same preview as ``dunning policy migrate``); POST .../migrate-champion moves them."""


class MigratedOut(BaseModel):
    account_number: str
    moved: bool
    problem: str = ""


@router.get("/experiments", response_model=list[ExperimentSummary], responses=ERRORS)
async def list_experiments(state: State, who: Reader) -> list[ExperimentSummary]:
    """Every experiment with its arms and status."""
    return await experiments.list_experiments(state.services)


@router.post("/experiments", response_model=ExperimentSummary, responses=ERRORS)
async def start(body: dict[str, Any], state: State, who: Lead) -> ExperimentSummary:
    """Start an experiment from its configuration (the fields of an experiment file, as JSON)."""
    text = json.dumps(body)
    try:
        checked = await asyncio.to_thread(
            experiments.check_text, text, "body", state.services.settings
        )
    except ExperimentFileError as exc:
        raise Refused(
            Rejection.INVALID_REQUEST,
            "; ".join(f"{e.path or '(body)'}: {e.message}" for e in exc.errors),
        ) from None
    return await experiments.start_checked(state.services, who.actor(), checked)


@router.get("/experiments/{key}", response_model=ExperimentReport, responses=ERRORS)
async def status(
    key: str,
    state: State,
    who: Reader,
    forecast: Annotated[bool, Query(description="run the simulation's forecast")] = False,
) -> ExperimentReport:
    """Outcomes per arm from the live ledger, effects with intervals, and the guards (a guard
    that trips stops its challenger)."""
    return await experiments.status(state.services, who.actor(), key, with_forecast=forecast)


@router.get(
    "/experiments/{key}/chart.svg",
    responses={**ERRORS, 200: {"content": {"image/svg+xml": {}}}},
    response_class=Response,
)
async def chart_svg(key: str, state: State, who: Reader) -> Response:
    """Cumulative collection per arm by day since entry, as SVG."""
    found = await experiments.status(state.services, who.actor(), key, with_forecast=False)
    return Response(chart.svg(found), media_type="image/svg+xml")


@router.post("/experiments/{key}/stop", response_model=ExperimentSummary, responses=ERRORS)
async def stop(key: str, body: StopIn, state: State, who: Lead) -> ExperimentSummary:
    """Stop assigning new balances (or one challenger); assigned balances keep their arm."""
    return await experiments.stop(state.services, who.actor(), key, body.reason, body.arm)


async def _preview(state: State, who: Principal, promotion: Promotion) -> list[Any]:
    if not promotion.champion_running:
        return []
    bundle = experiments.promoted_bundle(state.services.settings, promotion)
    return await policy_ops.migration_plans(
        state.services, who.actor(), bundle, promotion.champion_running
    )


@router.post("/experiments/{key}/promote", response_model=PromotionOut, responses=ERRORS)
async def promote(key: str, body: PromoteIn, state: State, who: Lead) -> PromotionOut:
    """Make an arm's policy the default for new balances, end the experiment, and preview the
    migration of the champion's running balances."""
    promotion = await experiments.promote(state.services, who.actor(), key, body.arm)
    plans = await _preview(state, who, promotion)
    return PromotionOut(
        promotion=promotion,
        preview=[
            MigrationPreview(
                account_number=p.account_number,
                from_policy=p.old_ref,
                resumes_at=p.resume_at,
                problem=p.problem,
            )
            for p in plans
        ],
    )


@router.post(
    "/experiments/{key}/migrate-champion", response_model=list[MigratedOut], responses=ERRORS
)
async def migrate_champion(key: str, state: State, who: Lead) -> list[MigratedOut]:
    """Move the champion's running balances to the promoted policy (no retroactive steps)."""
    promotion = await experiments.promotion_of(state.services, key)
    bundle = experiments.promoted_bundle(state.services.settings, promotion)
    plans = await _preview(state, who, promotion)
    movable = [p for p in plans if not p.problem]
    outcomes = await policy_ops.migrate(state.services, who.actor(), bundle, movable)
    return [
        MigratedOut(account_number=o.account_number, moved=o.moved, problem=o.problem)
        for o in outcomes
    ]
