"""Experiment use cases: check, start, status (with guards), stop, promote.

The CLI (``cli/experiments.py``) and the API (``api/routes/experiments.py``) call these and only
render. Every action is audited with who did it; a guard that stops a challenger is audited as
``experiment-guard``. Guards run whenever a status is read and on the worker's periodic pass
(:func:`guard_loop`, every :data:`GUARD_INTERVAL`), and ``dunning experiment guard`` runs one
pass for a scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.loader import (
    DocumentError,
    PolicyBundle,
    PolicyError,
    PolicyFileError,
    _line_of,
    _locate,
    load_policy,
    parse_document,
    read_document,
)
from config.settings import Settings
from models.experiment import ExperimentConfig, GuardMetric, Metric
from models.orm import (
    Account,
    AccountStatus,
    ArmStatus,
    AuditEvent,
    DefaultPolicy,
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    ExperimentStatus,
)
from models.orm import repositories as repo
from services import audit
from services.audit import Outcome
from services.context import Services
from services.errors import Refused
from services.experiments import forecast as forecasting
from services.experiments.outcomes import (
    ArmInfo,
    ArmOutcome,
    BalanceOutcome,
    load_outcomes,
    summarise,
)
from services.experiments.stats import Effect, compare, guard_breach
from services.identity import Actor
from workflows.contract import Rejection

log = logging.getLogger(__name__)

GUARD_INTERVAL = dt.timedelta(minutes=15)
GUARD_ACTOR = "experiment-guard"


class ExperimentFileError(DocumentError):
    """An experiment file that cannot be used, with every problem (file, line, field)."""


# -- check -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    config: ExperimentConfig
    policies: dict[str, PolicyBundle]
    """Each arm's policy, by arm name."""
    config_hash: str


def check_file(path: Path, settings: Settings) -> Checked:
    """Validate an experiment file and load every arm's policy.

    Raises:
        ExperimentFileError: every problem found, each naming the file, line and field.
    """
    shown = str(path)
    return check_text(read_document(path, shown, ExperimentFileError), shown, settings)


def check_text(text: str, shown: str, settings: Settings) -> Checked:
    """:func:`check_file` of a document (YAML or JSON) that ``shown`` names in messages."""
    root, data = parse_document(text, shown, ExperimentFileError)
    if not isinstance(data, dict):
        raise ExperimentFileError([PolicyError(shown, 1, "", "expected a mapping of fields")])
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ExperimentFileError(_locate(shown, root, exc)) from exc
    errors: list[PolicyError] = []
    policies: dict[str, PolicyBundle] = {}
    places = [("champion",), *[("challengers", i) for i in range(len(config.challengers))]]
    for place, arm in zip(places, config.arms, strict=True):
        loc = (*place, "policy")
        found = settings.practice.policy_file(arm.policy)
        if found is None:
            errors.append(
                PolicyError(
                    shown,
                    _line_of(root, loc),
                    ".".join(map(str, loc)),
                    f"no policy {arm.policy!r} in the policy folders",
                )
            )
            continue
        try:
            policies[arm.name] = load_policy(found)
        except PolicyFileError:
            errors.append(
                PolicyError(
                    shown,
                    _line_of(root, loc),
                    ".".join(map(str, loc)),
                    f"policy {arm.policy!r} is not usable: check it with `dunning policy check`",
                )
            )
    for i, name in enumerate(config.eligibility.policies):
        if settings.practice.policy_file(name) is None:
            loc = ("eligibility", "policies", i)
            errors.append(
                PolicyError(
                    shown,
                    _line_of(root, loc),
                    "eligibility.policies." + str(i),
                    f"no policy {name!r} in the policy folders",
                )
            )
    if errors:
        raise ExperimentFileError(errors)
    digest = hashlib.sha256(
        json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()
    return Checked(config, policies, digest)


# -- start -----------------------------------------------------------------------------------


class ArmView(BaseModel):
    name: str
    policy: str
    policy_hash: str
    share_percent: float
    champion: bool
    status: str
    stop_reason: str | None = None


class ExperimentSummary(BaseModel):
    key: str
    status: str
    starts_on: dt.date
    ends_on: dt.date | None
    primary_metric: Metric
    arms: list[ArmView]
    started_by: str
    stop_reason: str | None = None
    promoted_arm: str | None = None


def _summary(experiment: Experiment, arms: list[ExperimentArm]) -> ExperimentSummary:
    config = ExperimentConfig.model_validate(experiment.config)
    return ExperimentSummary(
        key=experiment.key,
        status=experiment.status.value,
        starts_on=config.starts_on,
        ends_on=config.ends_on,
        primary_metric=config.primary_metric,
        arms=[
            ArmView(
                name=a.name,
                policy=a.policy_name,
                policy_hash=a.policy_hash,
                share_percent=a.share_bp / 100,
                champion=a.champion,
                status=a.status.value,
                stop_reason=a.stop_reason,
            )
            for a in arms
        ],
        started_by=experiment.started_by,
        stop_reason=experiment.stop_reason,
        promoted_arm=experiment.promoted_arm,
    )


def _arms(session: Session, experiment: Experiment) -> list[ExperimentArm]:
    return list(
        session.scalars(
            select(ExperimentArm)
            .where(ExperimentArm.experiment_id == experiment.id)
            .order_by(ExperimentArm.position)
        )
    )


def _find(session: Session, key: str) -> Experiment:
    experiment = session.scalars(select(Experiment).where(Experiment.key == key)).one_or_none()
    if experiment is None:
        raise Refused(Rejection.EXPERIMENT_UNKNOWN, f"experiment: no experiment {key!r}")
    return experiment


async def start(svc: Services, actor: Actor, path: Path) -> ExperimentSummary:
    """:func:`start_checked` of an experiment file."""
    checked = await asyncio.to_thread(check_file, path, svc.settings)
    return await start_checked(svc, actor, checked)


def start_in(session: Session, actor: Actor, checked: Checked) -> ExperimentSummary:
    """Write a checked experiment and its arms in ``session`` (the caller commits).

    Raises:
        Refused: EXPERIMENT_CLOSED when an experiment of that id exists already, or a running
            one takes balances of the same policy (one experiment per balance, never two).
    """
    config = checked.config
    if session.scalars(select(Experiment.id).where(Experiment.key == config.id)).first():
        raise Refused(
            Rejection.EXPERIMENT_CLOSED,
            f"id: an experiment {config.id!r} exists already; give a new one its own id",
        )
    for other in session.scalars(
        select(Experiment).where(Experiment.status == ExperimentStatus.RUNNING)
    ):
        theirs = ExperimentConfig.model_validate(other.config).eligible_policies
        shared = sorted(set(theirs) & set(config.eligible_policies))
        if shared:
            raise Refused(
                Rejection.EXPERIMENT_CLOSED,
                f"eligibility.policies: experiment {other.key!r} already takes balances of"
                f" {', '.join(shared)}; stop it first",
            )
    experiment = Experiment(
        key=config.id,
        config=config.model_dump(mode="json"),
        config_hash=checked.config_hash,
        status=ExperimentStatus.RUNNING,
        started_by=actor.id,
    )
    session.add(experiment)
    session.flush()
    for position, arm in enumerate(config.arms):
        bundle = checked.policies[arm.name]
        repo.store_policy_version(session, bundle)
        session.add(
            ExperimentArm(
                experiment_id=experiment.id,
                name=arm.name,
                position=position,
                champion=position == 0,
                policy_name=arm.policy,  # the name rows and the policy folders use
                policy_hash=bundle.hash,
                share_bp=int(arm.share * 100),
                status=ArmStatus.ACTIVE,
            )
        )
    session.flush()
    audit.record(
        session,
        actor,
        "experiment_started",
        None,
        Outcome.DONE,
        {"experiment": config.id, "config_hash": checked.config_hash},
    )
    return _summary(experiment, _arms(session, experiment))


async def start_checked(svc: Services, actor: Actor, checked: Checked) -> ExperimentSummary:
    """Start the experiment a file describes: from now on eligible new balances get an arm.

    Raises:
        ExperimentFileError: the file is not usable.
        Refused: EXPERIMENT_CLOSED when an experiment of that id exists already, or a running
            one takes balances of the same policy (one experiment per balance, never two).
    """
    return await svc.db(lambda session: start_in(session, actor, checked))


# -- status ----------------------------------------------------------------------------------


class EffectView(BaseModel):
    challenger: str
    metric: Metric
    n_champion: int
    n_challenger: int
    mean_champion: float
    mean_challenger: float
    difference: float
    ci_low: float | None
    ci_high: float | None
    confidence: float
    p_welch: float | None
    p_mann_whitney: float | None
    required_per_challenger: int | None
    warning: str | None
    significant: bool
    forecast_difference: float | None = None


class ArmReport(BaseModel):
    name: str
    policy: str
    champion: bool
    status: str
    stop_reason: str | None
    balances: int
    balance_cents: int
    collected_cents: int
    matured_30d: int
    matured_60d: int
    matured_90d: int
    collected_30d: float
    collected_60d: float
    collected_90d: float
    paid_in_full_90d: float | None
    median_days_to_payment: float | None
    contacts: int
    contacts_per_balance: float
    cost_cents: int
    cost_per_balance_cents: float
    cost_per_dollar: float | None
    harms: dict[str, int]
    harm_rates: dict[str, float]
    forecast: float | None = None
    curve: list[float]


class ExperimentReport(BaseModel):
    experiment: ExperimentSummary
    as_of: dt.datetime
    primary_metric: Metric
    arms: list[ArmReport]
    effects: list[EffectView]
    guard_stops: list[str]
    """Challengers a guard stopped during this status (already stopped ones show in arms)."""


def _arm_report(o: ArmOutcome, forecast: float | None) -> ArmReport:
    return ArmReport(
        name=o.name,
        policy=o.policy,
        champion=o.champion,
        status=o.status,
        stop_reason=o.stop_reason,
        balances=o.balances,
        balance_cents=o.balance_cents,
        collected_cents=o.collected_cents,
        matured_30d=o.matured[30],
        matured_60d=o.matured[60],
        matured_90d=o.matured[90],
        collected_30d=round(o.collected_mean[30], 2),
        collected_60d=round(o.collected_mean[60], 2),
        collected_90d=round(o.collected_mean[90], 2),
        paid_in_full_90d=o.paid_in_full_90d,
        median_days_to_payment=o.median_days_to_payment,
        contacts=o.contacts,
        contacts_per_balance=round(o.contacts_per_balance, 3),
        cost_cents=o.cost_cents,
        cost_per_balance_cents=round(o.cost_per_balance_cents, 2),
        cost_per_dollar=round(o.cost_per_dollar, 4) if o.cost_per_dollar is not None else None,
        harms=o.harms,
        harm_rates={h.value: round(o.rate(h), 4) for h in GuardMetric},
        forecast=forecast,
        curve=[round(v, 2) for v in o.curve],
    )


def apply_guards(session: Session, experiment: Experiment, as_of: dt.datetime) -> list[str]:
    """Stop every active challenger a guard condemns; returns what was stopped and why."""
    if experiment.status is not ExperimentStatus.RUNNING:
        return []
    config = ExperimentConfig.model_validate(experiment.config)
    arms = _arms(session, experiment)
    outcomes = load_outcomes(session, experiment.id, as_of)
    infos = [
        ArmInfo(a.name, a.policy_name, a.champion, a.status.value, a.stop_reason) for a in arms
    ]
    per_arm = {o.name: o for o in summarise(outcomes, infos, as_of)}
    champion = next(a for a in arms if a.champion)
    base = per_arm[champion.name]
    stopped = []
    for arm in arms:
        if arm.champion or arm.status is not ArmStatus.ACTIVE:
            continue
        mine = per_arm[arm.name]
        for guard in config.guards:
            why = guard_breach(
                guard,
                base.harms[guard.metric.value],
                base.balances,
                mine.harms[guard.metric.value],
                mine.balances,
            )
            if why is None:
                continue
            arm.status = ArmStatus.STOPPED
            arm.stopped_at = as_of
            arm.stop_reason = f"guard: {why}"[:300]
            session.add(
                AuditEvent(
                    actor=GUARD_ACTOR,
                    action="experiment_arm_stopped",
                    detail={"experiment": experiment.key, "arm": arm.name, "guard": why},
                )
            )
            stopped.append(f"{arm.name}: {why}")
            break
    return stopped


def _effects(
    config: ExperimentConfig,
    arms: list[ExperimentArm],
    outcomes: list[BalanceOutcome],
    as_of: dt.datetime,
    forecasts: dict[str, float],
) -> list[EffectView]:
    metric = config.primary_metric
    matured = [o for o in outcomes if o.observed_days(as_of) >= metric.window_days]
    champion = next(a for a in arms if a.champion)
    base = [o.value(metric) for o in matured if o.arm == champion.name]
    views = []
    for arm in arms:
        if arm.champion:
            continue
        values = [o.value(metric) for o in matured if o.arm == arm.name]
        s = config.statistics
        effect: Effect = compare(
            base,
            values,
            mde=s.min_detectable_effect,
            alpha=s.alpha,
            power=s.power,
            ratio=champion.share_bp / arm.share_bp,
            resamples=s.bootstrap_resamples,
            seed=s.seed,
        )
        fc = (
            forecasts[arm.name] - forecasts[champion.name]
            if arm.name in forecasts and champion.name in forecasts
            else None
        )
        views.append(
            EffectView(
                challenger=arm.name,
                metric=metric,
                **dataclasses.asdict(effect),
                significant=effect.significant,
                forecast_difference=fc,
            )
        )
    return views


_FORECASTS: dict[tuple[str, str], dict[str, float]] = {}
"""Forecasts by (experiment key, config hash): the simulation runs once per process."""


def _forecast(
    experiment: Experiment, arms: list[ExperimentArm], settings: Settings
) -> dict[str, float]:
    config = ExperimentConfig.model_validate(experiment.config)
    if config.forecast.balances == 0:
        return {}
    key = (experiment.key, experiment.config_hash)
    if key not in _FORECASTS:
        policies = []
        for arm in arms:
            found = settings.practice.policy_file(arm.policy_name)
            if found is None:
                return {}
            policies.append((arm.name, load_policy(found).policy))
        found_fc = forecasting.forecast(
            policies, config.primary_metric, config.forecast.balances, config.forecast.seed
        )
        _FORECASTS[key] = {f.arm: f.mean for f in found_fc}
    return _FORECASTS[key]


def report(
    session: Session,
    key: str,
    as_of: dt.datetime,
    settings: Settings,
    *,
    with_forecast: bool = True,
) -> ExperimentReport:
    """Guards first (they may stop a challenger), then outcomes, effects and the forecast."""
    experiment = _find(session, key)
    stopped = apply_guards(session, experiment, as_of)
    session.flush()
    config = ExperimentConfig.model_validate(experiment.config)
    arms = _arms(session, experiment)
    outcomes = load_outcomes(session, experiment.id, as_of)
    infos = [
        ArmInfo(a.name, a.policy_name, a.champion, a.status.value, a.stop_reason) for a in arms
    ]
    forecasts = _forecast(experiment, arms, settings) if with_forecast else {}
    per_arm = summarise(outcomes, infos, as_of)
    return ExperimentReport(
        experiment=_summary(experiment, arms),
        as_of=as_of,
        primary_metric=config.primary_metric,
        arms=[_arm_report(o, forecasts.get(o.name)) for o in per_arm],
        effects=_effects(config, arms, outcomes, as_of, forecasts),
        guard_stops=stopped,
    )


async def status(
    svc: Services,
    actor: Actor,
    key: str,
    *,
    as_of: dt.datetime | None = None,
    with_forecast: bool = True,
) -> ExperimentReport:
    """The experiment's report from the live ledger; any guard it trips stops that challenger."""
    when = as_of or dt.datetime.now(dt.UTC)

    def read(session: Session) -> ExperimentReport:
        found = report(session, key, when, svc.settings, with_forecast=with_forecast)
        audit.record(session, actor, "experiment_status", None, Outcome.DONE, {"experiment": key})
        return found

    return await svc.db(read)


async def list_experiments(svc: Services) -> list[ExperimentSummary]:
    def read(session: Session) -> list[ExperimentSummary]:
        return [
            _summary(e, _arms(session, e))
            for e in session.scalars(select(Experiment).order_by(Experiment.started_at))
        ]

    return await svc.db(read)


def guard_pass(
    session_factory: sessionmaker[Session], as_of: dt.datetime | None = None
) -> list[str]:
    """One pass of every running experiment's guards (the worker's loop and the CLI)."""
    when = as_of or dt.datetime.now(dt.UTC)
    stopped = []
    with session_factory.begin() as session:
        for experiment in session.scalars(
            select(Experiment).where(Experiment.status == ExperimentStatus.RUNNING)
        ):
            stopped += [f"{experiment.key}/{s}" for s in apply_guards(session, experiment, when)]
    return stopped


async def guard_loop(
    session_factory: sessionmaker[Session],
    stop: asyncio.Event,
    interval: dt.timedelta = GUARD_INTERVAL,
) -> None:
    """The worker's periodic guard pass, until ``stop`` is set; a failed pass is logged."""
    while not stop.is_set():
        try:
            for line in await asyncio.to_thread(guard_pass, session_factory):
                log.warning("experiment guard stopped %s", line)
        except Exception:  # the next pass tries again; the worker must not die of it
            log.exception("experiment guard pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval.total_seconds())


# -- stop and promote ------------------------------------------------------------------------


async def stop(
    svc: Services, actor: Actor, key: str, reason: str, arm: str | None = None
) -> ExperimentSummary:
    """Stop the experiment (no new assignments) or one challenger; assigned balances keep their
    arm's policy (move them with ``dunning policy migrate`` if they must)."""
    if not reason.strip():
        raise Refused(Rejection.INVALID_REQUEST, "reason: say why the experiment stops")

    def write(session: Session) -> ExperimentSummary:
        experiment = _find(session, key)
        if experiment.status is not ExperimentStatus.RUNNING:
            raise Refused(
                Rejection.EXPERIMENT_CLOSED,
                f"experiment {key!r} is {experiment.status.value} already",
            )
        arms = _arms(session, experiment)
        now = dt.datetime.now(dt.UTC)
        if arm is None:
            experiment.status = ExperimentStatus.STOPPED
            experiment.stopped_at = now
            experiment.stop_reason = reason[:300]
        else:
            target = next((a for a in arms if a.name == arm), None)
            if target is None:
                raise Refused(
                    Rejection.INVALID_REQUEST, f"arm: experiment {key!r} has no arm {arm!r}"
                )
            if target.champion:
                raise Refused(
                    Rejection.INVALID_REQUEST,
                    "arm: the champion cannot be stopped alone; stop the experiment",
                )
            target.status, target.stopped_at, target.stop_reason = (
                ArmStatus.STOPPED,
                now,
                reason[:300],
            )
        audit.record(
            session,
            actor,
            "experiment_stopped",
            None,
            Outcome.DONE,
            {"experiment": key, "arm": arm, "reason": reason[:300]},
        )
        return _summary(experiment, arms)

    return await svc.db(write)


class Promotion(BaseModel):
    experiment: ExperimentSummary
    default_policy: str
    champion_running: list[str]
    """Account numbers of the champion arm's running balances: candidates for migration."""


async def promote(svc: Services, actor: Actor, key: str, arm: str) -> Promotion:
    """Make ``arm``'s policy the default for new balances (stored, honoured by intake) and end
    the experiment; its report stays available. Returns the champion's running balances, which
    the caller may move with :func:`services.policy.migration_plans` and ``migrate``."""

    def write(session: Session) -> Promotion:
        experiment = _find(session, key)
        if experiment.status is ExperimentStatus.PROMOTED:
            raise Refused(
                Rejection.EXPERIMENT_CLOSED,
                f"experiment {key!r} promoted {experiment.promoted_arm!r} already",
            )
        arms = _arms(session, experiment)
        target = next((a for a in arms if a.name == arm), None)
        if target is None:
            raise Refused(Rejection.INVALID_REQUEST, f"arm: experiment {key!r} has no arm {arm!r}")
        if target.status is ArmStatus.STOPPED:
            raise Refused(
                Rejection.EXPERIMENT_CLOSED,
                f"arm: {arm!r} was stopped ({target.stop_reason}); it cannot be promoted",
            )
        now = dt.datetime.now(dt.UTC)
        experiment.status = ExperimentStatus.PROMOTED
        experiment.promoted_arm = target.name
        experiment.stopped_at = experiment.stopped_at or now
        experiment.stop_reason = experiment.stop_reason or f"promoted {target.name}"
        session.add(
            DefaultPolicy(
                policy_name=target.policy_name, set_by=actor.id, experiment_id=experiment.id
            )
        )
        running = _champion_running(session, arms, target.policy_name)
        audit.record(
            session,
            actor,
            "experiment_promoted",
            None,
            Outcome.DONE,
            {
                "experiment": key,
                "arm": arm,
                "default_policy": target.policy_name,
                "champion_running": len(running),
            },
        )
        return Promotion(
            experiment=_summary(experiment, arms),
            default_policy=target.policy_name,
            champion_running=running,
        )

    return await svc.db(write)


def _champion_running(session: Session, arms: list[ExperimentArm], policy: str) -> list[str]:
    champion = next(a for a in arms if a.champion)
    return list(
        session.scalars(
            select(Account.account_number)
            .join(ExperimentAssignment, ExperimentAssignment.account_id == Account.id)
            .where(
                ExperimentAssignment.arm_id == champion.id,
                Account.status == AccountStatus.OPEN,
                Account.balance_cents > 0,
                Account.policy_name != policy,
            )
            .order_by(Account.account_number)
        )
    )


async def promotion_of(svc: Services, key: str) -> Promotion:
    """A promoted experiment's promotion, with the champion's balances still running now.

    Raises:
        Refused: EXPERIMENT_CLOSED when the experiment has not been promoted.
    """

    def read(session: Session) -> Promotion:
        experiment = _find(session, key)
        arms = _arms(session, experiment)
        target = next((a for a in arms if a.name == experiment.promoted_arm), None)
        if experiment.status is not ExperimentStatus.PROMOTED or target is None:
            raise Refused(Rejection.EXPERIMENT_CLOSED, f"experiment {key!r} has not been promoted")
        return Promotion(
            experiment=_summary(experiment, arms),
            default_policy=target.policy_name,
            champion_running=_champion_running(session, arms, target.policy_name),
        )

    return await svc.db(read)


def promoted_bundle(settings: Settings, promotion: Promotion) -> PolicyBundle:
    """The promoted policy as the policy folders hold it now (what migration moves balances to)."""
    found = settings.practice.policy_file(promotion.default_policy)
    if found is None:
        raise Refused(
            Rejection.POLICY_UNUSABLE, f"policy: {promotion.default_policy!r} is no longer there"
        )
    return load_policy(found)
