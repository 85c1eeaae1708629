"""Provider webhooks. Each verifies the provider's signature over the raw request before it
parses anything; a forged, replayed or malformed request is refused and changes nothing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response
from starlette.formparsers import MultiPartException

from api.schemas import Problem
from api.state import State
from api.webhooks import sendgrid, sendgrid_inbound, twilio

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "signed, but not a valid event"},
    403: {"model": Problem, "description": "forged, replayed or unsigned"},
}
FORM_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        },
    }
}


def _refused(exc: twilio.Refused) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=exc.status)


async def _twilio_params(request: Request, state: State, signature: str | None) -> dict[str, str]:
    body = await request.body()
    url = twilio.public_url(state.settings, request.url.path, request.url.query, str(request.url))
    return twilio.verify(state.settings, url, body, signature)


@router.post(
    "/twilio/status",
    responses={200: {"content": {"application/json": {}}}, **REFUSALS},
    openapi_extra=FORM_BODY,
    summary="Twilio message status callback",
)
async def twilio_status(
    request: Request,
    state: State,
    signature: Annotated[str | None, Header(alias=twilio.SIGNATURE_HEADER)] = None,
) -> Response:
    try:
        params = await _twilio_params(request, state, signature)
        outcome = await twilio.handle_status(
            state.intake, params, request.query_params.get("outbox_id")
        )
    except twilio.Refused as exc:
        return _refused(exc)
    return JSONResponse(
        {
            "duplicate": outcome.duplicate,
            "communication_id": outcome.communication_id,
            "event": outcome.event.value if outcome.event else None,
        }
    )


@router.post(
    "/twilio/inbound",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}, "description": "TwiML"}, **REFUSALS},
    openapi_extra=FORM_BODY,
    summary="Twilio inbound text (STOP, START, HELP)",
)
async def twilio_inbound(
    request: Request,
    state: State,
    signature: Annotated[str | None, Header(alias=twilio.SIGNATURE_HEADER)] = None,
) -> Response:
    try:
        params = await _twilio_params(request, state, signature)
        twiml = await twilio.handle_inbound(state.intake, params, state.settings)
    except twilio.Refused as exc:
        return _refused(exc)
    return Response(twiml, media_type="application/xml")


@router.post(
    "/sendgrid/events",
    responses={200: {"content": {"application/json": {}}}, **REFUSALS},
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}
            },
        }
    },
    summary="SendGrid Event Webhook",
)
async def sendgrid_events(
    request: Request,
    state: State,
    signature: Annotated[str | None, Header(alias=sendgrid.SIGNATURE_HEADER)] = None,
    timestamp: Annotated[str | None, Header(alias=sendgrid.TIMESTAMP_HEADER)] = None,
) -> Response:
    verifier: sendgrid.Verifier = request.app.state.sendgrid_verifier
    try:
        events = verifier.verify(await request.body(), signature, timestamp)
        outcome = await sendgrid.handle_batch(state.intake, events)
    except twilio.Refused as exc:
        return _refused(exc)
    return JSONResponse(
        {"accepted": outcome.accepted, "duplicates": outcome.duplicates, "ignored": outcome.ignored}
    )


@router.post(
    "/sendgrid/inbound",
    responses={200: {"content": {"application/json": {}}}, **REFUSALS},
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            },
        }
    },
    summary="SendGrid Inbound Parse (email replies: unsubscribe, wrong person, questions)",
)
async def sendgrid_inbound_parse(
    request: Request,
    state: State,
    key: str | None = None,
) -> Response:
    try:
        sendgrid_inbound.verify_key(state.settings, key)
        try:
            form = await request.form()
        except MultiPartException:
            raise twilio.Refused(400, "not a multipart form") from None
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        outcome = await sendgrid_inbound.handle_inbound(state.intake, fields)
    except twilio.Refused as exc:
        return _refused(exc)
    return JSONResponse(
        {
            "duplicate": outcome.duplicate,
            "outcome": outcome.intent.value if outcome.intent else None,
            "accounts_told": outcome.accounts_told,
            "tasks": outcome.tasks,
        }
    )
