"""The API's edge: strict JSON types, a body size limit, throttled authentication failures,
refusals that cannot flood the audit trail, and /docs served without any CDN."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.edge import AuditLimiter, AuthThrottle
from config.settings import Settings
from models.orm import Account, ApiRole, AuditEvent
from tests.api_support import Api, account_body, api_settings, ec_key_pair, running_api

pytestmark = pytest.mark.devserver
BODY_LIMIT = 4096
FAILURES = 3


@pytest.fixture
async def api(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    _, public = ec_key_pair()
    base = api_settings(settings, public)
    edge = base.model_copy(
        update={
            "api": base.api.model_copy(
                update={"max_body_bytes": BODY_LIMIT, "auth_failures": FAILURES}
            )
        }
    )
    async with running_api(dev_env.client, edge, session_factory) as a:
        yield a


@pytest.mark.parametrize(
    "amount", ["100", True, 100.5, "1e2", None], ids=["string", "bool", "float", "exp", "null"]
)
async def test_amounts_are_json_integers(api: Api, amount: object) -> None:
    r = await api.http.post(
        "/accounts/NO-SUCH-ACCT/payments",
        json={"reference": f"P-{uuid.uuid4().hex[:8]}", "amount_cents": amount},
        headers=api.auth(ApiRole.INTEGRATION),
    )
    assert r.status_code == 422, r.text
    assert [e["loc"][-1] for e in r.json()["detail"]] == ["amount_cents"]


async def test_integers_pass_and_flags_are_json_booleans(api: Api) -> None:
    auth = api.auth(ApiRole.INTEGRATION)
    r = await api.http.post(
        "/accounts/NO-SUCH-ACCT/payments",
        json={"reference": f"P-{uuid.uuid4().hex[:8]}", "amount_cents": 100},
        headers=auth,
    )
    assert r.status_code == 404, r.text  # valid: it reached the ledger, which has no such account
    number = f"S-{uuid.uuid4().hex[:8].upper()}"
    for flag in (1, "yes", "true"):
        body = account_body(sms_consent=flag)
        r = await api.http.put(f"/accounts/{number}", json=body, headers=auth)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"][-1] == "sms_consent"
    body = account_body()
    body["charges"][0]["charges_cents"] = "18500"
    r = await api.http.put(f"/accounts/{number}", json=body, headers=auth)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "charges_cents"
    r = await api.http.put(f"/accounts/{number}", json=account_body(sms_consent=True), headers=auth)
    assert r.status_code == 200, r.text


async def test_a_body_above_the_limit_is_413(api: Api) -> None:
    auth = api.auth(ApiRole.INTEGRATION)
    big = {"reference": "R-big", "amount_cents": 1, "method": "x" * (BODY_LIMIT + 10)}
    r = await api.http.post("/accounts/NO-SUCH-ACCT/payments", json=big, headers=auth)
    assert r.status_code == 413 and str(BODY_LIMIT) in r.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"reference": "R-big", "amount_cents": 1, "method": "'
        for _ in range(BODY_LIMIT // 512 + 2):
            yield b"x" * 512
        yield b'"}'

    r = await api.http.post(
        "/accounts/NO-SUCH-ACCT/payments",
        content=chunks(),
        headers={**auth, "content-type": "application/json"},
    )
    assert r.status_code == 413
    # webhooks too, before any signature is read
    r = await api.http.post("/webhooks/sendgrid/events", content=b"[" + b" " * BODY_LIMIT + b"]")
    assert r.status_code == 413
    # and a body within the limit is untouched
    r = await api.http.post(
        "/accounts/NO-SUCH-ACCT/payments",
        json={"reference": "R-small", "amount_cents": 1},
        headers=auth,
    )
    assert r.status_code == 404


async def test_repeated_authentication_failures_are_throttled(api: Api) -> None:
    url = "/accounts/NO-SUCH-ACCT/status"
    before = _count(api, "auth_failed")
    for i in range(FAILURES):
        r = await api.http.get(url, headers={"Authorization": f"Bearer dun_guess-{i}"})
        assert r.status_code == 401
    r = await api.http.get(url, headers={"Authorization": "Bearer dun_guess-x"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    # while throttled even a valid token from that client waits: no lookups at all
    r = await api.http.get(url, headers=api.auth(ApiRole.STAFF))
    assert r.status_code == 429
    # the burst left one audit row, not one per attempt
    assert _count(api, "auth_failed") - before == 1


async def test_refusals_do_not_flood_the_audit_trail(api: Api) -> None:
    integration = api.auth(ApiRole.INTEGRATION)
    before = _count(api, "forbidden")
    for _ in range(25):
        r = await api.http.get("/worklist", headers=integration)
        assert r.status_code == 403
    with api.session_factory() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "forbidden").order_by(AuditEvent.id)
        ).all()
    assert len(rows) - before == 1
    assert rows[-1].detail["permission"] == "read"


def _count(api: Api, action: str) -> int:
    with api.session_factory() as session:
        return (
            session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
            )
            or 0
        )


async def test_docs_are_served_without_any_cdn(api: Api) -> None:
    r = await api.http.get("/docs")
    assert r.status_code == 200 and "swagger-ui" in r.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", r.text)
    urls += re.findall(r"""url: ?['"]([^'"]+)['"]""", r.text)
    assert urls and all(u.startswith("/") for u in urls), urls
    assert "cdn" not in r.text.lower()
    for url in urls:
        asset = await api.http.get(url)
        assert asset.status_code == 200, url
        assert asset.content
    assert (await api.http.get("/redoc")).status_code == 404


def test_throttle_window_and_audit_counts() -> None:
    now = [1000.0]
    throttle = AuthThrottle(max_failures=2, window_seconds=60, clock=lambda: now[0])
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    now[0] += 10
    throttle.failed("a")
    assert throttle.retry_after("a") == 50
    assert throttle.retry_after("b") == 0  # per client
    now[0] += 51
    assert throttle.retry_after("a") == 0  # the first failure left the window

    limiter = AuditLimiter(window_seconds=60, clock=lambda: now[0])
    assert limiter.admit("k") == 0
    assert [limiter.admit("k") for _ in range(3)] == [None, None, None]
    assert limiter.admit("other") == 0
    now[0] += 60
    assert limiter.admit("k") == 3  # the next row says how many were left out


async def test_a_repeated_refused_action_is_one_audit_row(api: Api) -> None:
    number = f"H-{uuid.uuid4().hex[:8].upper()}"
    r = await api.http.put(
        f"/accounts/{number}", json=account_body(), headers=api.auth(ApiRole.INTEGRATION)
    )
    assert r.status_code == 200, r.text
    staff = api.auth(ApiRole.STAFF)
    r = await api.http.post(f"/accounts/{number}/hold", json={"reason": "dispute"}, headers=staff)
    assert r.status_code == 200, r.text
    for _ in range(8):
        r = await api.http.post(
            f"/accounts/{number}/hold", json={"reason": "dispute"}, headers=staff
        )
        assert r.status_code == 409 and r.json()["kind"] == "AlreadyOnHold"
    with api.session_factory() as session:
        rows = session.execute(
            select(AuditEvent.detail)
            .join(Account, Account.id == AuditEvent.account_id)
            .where(Account.account_number == number, AuditEvent.action == "hold")
        ).scalars()
        outcomes = sorted(d["outcome"] for d in rows)
    assert outcomes == ["done", "refused"]
