"""Run a policy over balances in-process, with the decision core the workflow uses.

:func:`simulate_balance` is the ``run`` loop of ``workflows/escalation.py`` with the clock replaced
by an event list: it asks :func:`workflows.decisions.decide` what is next, waits until then (or
until a payment arrives, as the ``record_payment`` signal wakes the workflow), records skips with
:func:`~workflows.decisions.record_skip`, sends with the same channel choice as the ``send_step``
activity and records the result with :func:`~workflows.decisions.record_sent`, and applies
payments with :func:`~workflows.decisions.apply_payment`. The charge enters as the workflow's
start signal does, through :func:`~workflows.decisions.apply_charge`.

Differences from the running engine, on purpose:
- approval-gated steps are approved the moment they are due (no person in the loop);
- a step is recorded at its planned moment; the workflow records ``workflow.now()`` after the
  send activity returns, milliseconds later;
- returned mail and opt-outs reach the balance as the ``channel_event`` signal does, through
  :func:`workflows.account_rules.apply_channel_event` on its contact profile;
- an agency referral that is sent ends the balance's ladder, as placement ends the workflow.
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from models.actions import ChannelEventKind, ChannelEventSignal
from models.payloads import ContactProfile, LadderState, StepOutcome
from models.policy import Channel, Policy, StepKind
from simulation.portfolio import SimBalance
from simulation.response import ResponseModel
from workflows import account_rules, decisions
from workflows.decisions import Decision, Done, Planned, SendNow, Skip, WaitForChange, WaitUntil

ELECTRONIC = (Channel.EMAIL, Channel.SMS)


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment posted for a balance at a given moment (the ``record_payment`` signal)."""

    at: dt.datetime
    amount_cents: int
    reference: str


class DecisionCache:
    """Memoises :func:`decide` across balances whose inputs are the same.

    ``decide`` is pure; many balances of a portfolio reach the same point of the ladder with the
    same inputs (same profile, first statement, contacts so far, time). The key holds everything
    ``decide`` reads: the profile (shared objects, by identity), the first statement, the opening
    date when a step has an account-age condition, the contacts so far (step, channel, moment),
    the next step, the plan and assistance flags, the time, and the balance reduced to where it
    stands against every amount threshold of the policy (``decide`` only compares the balance
    with zero, the policy minimum, each step's ``min_balance`` and the small-balance limit), and
    the last activity when the policy writes small balances off. A profile changed by a channel
    event is a new shared object, so it starts a new path. ``tests/test_simulation.py`` checks
    that cached and uncached runs agree, so that a new input of ``decide`` cannot slip by.
    """

    MAX_ENTRIES = 400_000

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        limits = {policy.thresholds.minimum_balance}
        limits |= {s.when.min_balance for s in policy.steps if s.when.min_balance is not None}
        if policy.thresholds.small_balance_write_off is not None:
            limits.add(policy.thresholds.small_balance_write_off.below)
        self._limits = sorted(limits)
        self._uses_age = any(
            s.when.min_account_age_days is not None
            or getattr(s.when, "max_account_age_days", None) is not None
            for s in policy.steps
        )
        self._uses_activity = policy.thresholds.small_balance_write_off is not None
        self._decisions: dict[tuple[object, ...], Decision] = {}
        self._paths: dict[tuple[object, ...], int] = {}
        self._profiles: dict[int, ContactProfile] = {}
        self.hits = 0
        self.misses = 0

    def start_path(self, profile: ContactProfile, state: LadderState, parent: int = -1) -> int:
        """A path for a new balance, or for one whose profile changed after ``parent``."""
        self._profiles.setdefault(id(profile), profile)  # keeps the id valid for the run
        opened = state.opened_at if self._uses_age else None
        return self._path((parent, id(profile), state.anchor_at, opened))

    def extend_path(self, path: int, step_id: str, channel: Channel | None, at: dt.datetime) -> int:
        return self._path((path, step_id, channel, at))

    def _path(self, key: tuple[object, ...]) -> int:
        found = self._paths.get(key)
        if found is None:
            found = self._paths[key] = len(self._paths)
        return found

    def decide(
        self, path: int, state: LadderState, profile: ContactProfile, now: dt.datetime
    ) -> Decision:
        cents = state.balance_cents
        key = (
            path,
            state.next_index,
            cents > 0,
            cents == 0,
            bisect.bisect_right(self._limits, cents),
            state.plan_active,
            state.fa_application_pending,
            getattr(state, "last_activity_at", None) if self._uses_activity else None,
            now,
        )
        found = self._decisions.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        if len(self._decisions) >= self.MAX_ENTRIES:
            self._decisions.clear()
        found = self._decisions[key] = decisions.decide(self.policy, state, profile, now)
        return found


@dataclass(slots=True)
class BalanceRun:
    """What happened to one balance up to the horizon."""

    balance: SimBalance
    state: LadderState
    outcome: str  # paid, placed, written_off, below_minimum, open
    payments: list[tuple[dt.datetime, int]] = field(default_factory=list)
    cost_micros: int = 0
    placed_cents: int = 0
    written_off_cents: int = 0
    waiting_for: str = ""


OUTCOMES = ("paid", "placed", "written_off", "below_minimum", "open")

# Events of a balance's queue, ordered by time then by insertion.
_PAYMENT, _DRAWN_PAYMENT, _LETTER_RETURNED, _OPTED_OUT = range(4)


class ProfileVariants:
    """Profiles changed by channel events, made once and shared (the cache keys on identity)."""

    def __init__(self) -> None:
        self._made: dict[tuple[int, ChannelEventKind, Channel], ContactProfile] = {}
        self._keep: list[ContactProfile] = []

    def after(
        self, profile: ContactProfile, kind: ChannelEventKind, channel: Channel
    ) -> ContactProfile:
        key = (id(profile), kind, channel)
        found = self._made.get(key)
        if found is None:
            found = profile.model_copy(deep=True)
            account_rules.apply_channel_event(
                found, ChannelEventSignal(reference="simulated", kind=kind, channel=channel)
            )
            self._made[key] = found
            self._keep += [profile, found]
        return found


_VARIANTS = ProfileVariants()


def simulate_balance(
    policy: Policy,
    balance: SimBalance,
    horizon_end: dt.datetime,
    *,
    response: ResponseModel | None = None,
    rng: random.Random | None = None,
    payments: Iterable[Payment] = (),
    cache: DecisionCache | None = None,
) -> BalanceRun:
    """Follow one balance up its ladder until it is paid, placed or ``horizon_end`` is reached.

    Args:
        policy: the escalation policy.
        balance: the balance, its profile and the moment it enters the ladder.
        horizon_end: nothing at or after this moment happens.
        response: the patient response model; None for no responses besides ``payments``.
        rng: the random source for responses (required with ``response``).
        payments: payments injected at given moments, as if posted by staff.
        cache: a shared :class:`DecisionCache`, or None to call ``decide`` every time.
    """
    state = LadderState(opened_at=balance.opened_at)
    # The import starts the workflow with a zero balance and the charge as its start signal.
    decisions.apply_charge(
        state, f"{balance.account}-charge", balance.balance_cents, balance.entered_at
    )
    now = balance.entered_at
    state.anchor_at = now  # ``first_statement_at`` is not set by the import: workflow.now()
    profile = balance.profile
    run = BalanceRun(balance, state, "open")
    queue: list[tuple[dt.datetime, int, int, int, str]] = []  # (at, order, kind, cents, ref)
    for p in payments:
        heapq.heappush(queue, (p.at, len(queue), _PAYMENT, p.amount_cents, p.reference))
    order = len(queue)
    payment_pending = False
    written_off = False
    path = cache.start_path(profile, state) if cache is not None else 0

    while state.balance_cents > 0:
        if cache is not None:
            decision = cache.decide(path, state, profile, now)
        else:
            decision = decisions.decide(policy, state, profile, now)
        wake: dt.datetime | None = None
        if isinstance(decision, WaitUntil):
            wake = decision.planned.at
        elif isinstance(decision, Done | WaitForChange):
            run.waiting_for = decision.reason
            if getattr(decision, "write_off", False):
                written_off = True  # the core says the small balance is written off now
                run.written_off_cents = state.balance_cents
                break
        elif isinstance(decision, Skip):
            decisions.record_skip(state, decision, now)
            continue
        else:
            assert isinstance(decision, SendNow)
            planned = decision.planned
            # Approval gates: approved at once. The send activity takes the first channel of the
            # chain; the profile already excludes what is unreachable or refused.
            channel = planned.channels[0]
            decisions.record_sent(state, planned, now, channel, None, StepOutcome.SENT, [])
            if cache is not None:
                path = cache.extend_path(path, planned.step.id, channel, now)
            if response is not None:
                assert rng is not None
                run.cost_micros += response.channels[channel].cost_micros
            if planned.step.kind is StepKind.AGENCY_REFERRAL:
                run.placed_cents = state.balance_cents  # the account leaves the practice's ladder
                break
            if response is not None and not payment_pending:
                assert rng is not None
                kind, at = _respond(response, rng, planned, channel, now)
                if kind >= 0:
                    order += 1
                    ref = channel.value if kind == _OPTED_OUT else f"{balance.account}-r{order}"
                    heapq.heappush(queue, (at, order, kind, 0, ref))
                    payment_pending = kind == _DRAWN_PAYMENT
            continue
        # Wait for the timer, or for a signal that comes first (it wakes the workflow).
        if queue and (wake is None or queue[0][0] < wake):
            at, _, kind, cents, reference = heapq.heappop(queue)
            if at >= horizon_end:
                break
            now = at
            if kind in (_LETTER_RETURNED, _OPTED_OUT):
                event = (
                    ChannelEventKind.LETTER_RETURNED
                    if kind == _LETTER_RETURNED
                    else ChannelEventKind.OPTED_OUT
                )
                channel = Channel.LETTER if kind == _LETTER_RETURNED else Channel(reference)
                profile = _VARIANTS.after(profile, event, channel)
                if cache is not None:
                    path = cache.start_path(profile, state, path)
                continue
            if kind == _DRAWN_PAYMENT:
                payment_pending = False
                cents = _amount(response, rng, state.balance_cents)
            if cents > 0 and decisions.apply_payment(state, reference, cents, now):
                run.payments.append((now, cents))
            continue
        if wake is None or wake >= horizon_end:
            break
        now = wake

    run.outcome = _outcome(state, run.placed_cents > 0, written_off, policy)
    return run


def _respond(
    response: ResponseModel,
    rng: random.Random,
    planned: Planned,
    channel: Channel,
    now: dt.datetime,
) -> tuple[int, dt.datetime]:
    """Draw the patient's response to one contact: (event kind or -1, when)."""
    behaviour = response.channels[channel]
    if channel is Channel.LETTER and rng.random() < response.returned_mail_probability:
        return _LETTER_RETURNED, now + dt.timedelta(days=response.returned_mail_days)
    if channel in ELECTRONIC and rng.random() < behaviour.opt_out_probability:
        return _OPTED_OUT, now + dt.timedelta(minutes=1)
    chance = behaviour.pay_probability * response.tone_multiplier.get(planned.step.tone, 1.0)
    if rng.random() >= chance:
        return -1, now
    return _DRAWN_PAYMENT, now + dt.timedelta(
        days=rng.expovariate(1.0 / behaviour.mean_days_to_pay)
    )


def _amount(response: ResponseModel | None, rng: random.Random | None, balance_cents: int) -> int:
    if balance_cents <= 0 or response is None or rng is None:
        return 0
    if balance_cents > 1 and rng.random() < response.partial_probability:
        fraction = rng.uniform(response.partial_fraction_min, response.partial_fraction_max)
        return max(1, min(balance_cents - 1, round(balance_cents * fraction)))
    return balance_cents


def _outcome(state: LadderState, placed: bool, written_off: bool, policy: Policy) -> str:
    if state.balance_cents <= 0:
        return "paid"
    if placed:
        return "placed"
    if written_off:
        return "written_off"
    if state.balance_cents < policy.thresholds.minimum_balance:
        return "below_minimum"
    return "open"


ProgressFn = Callable[[int], None]
