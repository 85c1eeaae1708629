"""State rules for medical debt, one table with its sources (issue 18, items 2 and 8).

Pure data and pure functions, free of project imports, so that the policy schema
(``models.policy``), the decision core (``workflows.decisions`` via ``workflows.protections``),
previews, the simulation and ``policy check`` share one table.

Which state's rules apply: the state the guarantor lives in (from the address) and the state the
policy names (where the care was given). Where they differ the more protective rule of the two
applies: the lower contact cap, any ban, the shorter statute of limitations.

Sources: the domain brief (``DOMAIN.md``, "Credit reporting and medical debt") for the credit
reporting bans, Massachusetts' contact cap and Minnesota's robocall ban; the statutes named in
each row for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StateRule:
    """What one state adds to the federal rules for medical debt."""

    state: str
    contacts_per_7_days: int | None = None
    """Calls, texts and voicemails together in any 7 days, or None for no state cap."""
    no_robocalls: bool = False
    bans_credit_reporting: bool = False
    bans_refusal_of_care_wording: bool = False
    """Statements may not say that care will be refused or delayed for an unpaid balance."""
    limitations_years: int | None = None
    """Statute of limitations for medical debt (collection suits), in years."""
    plan_cap_bp_hospital: int | None = None
    """A hospital's payment plan: at most this share of the household's monthly income, in basis
    points (400 = 4%) due in any calendar month."""
    plan_cap_bp_clinician: int | None = None
    """The same for an individual clinician or practice."""
    sources: tuple[str, ...] = field(default=())


STATE_RULES: dict[str, StateRule] = {
    rule.state: rule
    for rule in (
        StateRule(
            "MA",
            contacts_per_7_days=2,
            limitations_years=6,
            sources=("DOMAIN.md; 940 CMR 7.04(1)(f)", "M.G.L. c. 260, s. 2"),
        ),
        StateRule(
            "MN",
            no_robocalls=True,
            bans_credit_reporting=True,
            bans_refusal_of_care_wording=True,
            limitations_years=6,
            sources=(
                "DOMAIN.md",
                "Minn. Stat. 62J.805-.808 (Debt Fairness Act: no denial of care for medical debt,"
                " no credit reporting)",
                "Minn. Stat. 541.05",
            ),
        ),
        StateRule(
            "NY",
            bans_credit_reporting=True,
            limitations_years=3,
            sources=("DOMAIN.md; N.Y. Gen. Bus. Law 380-j", "N.Y. CPLR 214-i (medical debt)"),
        ),
        StateRule(
            "CA",
            bans_credit_reporting=True,
            limitations_years=4,
            sources=("DOMAIN.md; Cal. Civ. Code 1785.27 (SB 1061)", "Cal. Code Civ. Proc. 337"),
        ),
        StateRule(
            "CO",
            bans_credit_reporting=True,
            limitations_years=6,
            plan_cap_bp_hospital=400,
            plan_cap_bp_clinician=200,
            sources=(
                "DOMAIN.md; C.R.S. 5-16-103(3)(k) (HB 23-1126)",
                "C.R.S. 13-80-103.5",
                "DOMAIN.md (plans capped at 4% of monthly income, 2% for individual clinicians);"
                " C.R.S. 25.5-3-501 to -506 (HB 21-1198, hospital discounted care)",
            ),
        ),
        StateRule(
            "MD",
            bans_credit_reporting=True,
            limitations_years=3,
            plan_cap_bp_hospital=500,
            sources=(
                "DOMAIN.md; Md. Code, Health-Gen. 19-214.2",
                "Md. Cts. & Jud. Proc. 5-101",
                "DOMAIN.md (hospital plans capped at 5% of income); Md. Code, Health-Gen."
                " 19-214.2 (hospital payment plans)",
            ),
        ),
    )
}


def effective_rule(*states: str | None) -> StateRule:
    """The most protective combination of the rules of ``states`` (None and unknown ones add
    nothing): the lowest contact cap, every ban, the shortest statute of limitations."""
    rules = [STATE_RULES[s] for s in states if s is not None and s in STATE_RULES]
    caps = [r.contacts_per_7_days for r in rules if r.contacts_per_7_days is not None]
    years = [r.limitations_years for r in rules if r.limitations_years is not None]
    hospital = [r.plan_cap_bp_hospital for r in rules if r.plan_cap_bp_hospital is not None]
    clinician = [r.plan_cap_bp_clinician for r in rules if r.plan_cap_bp_clinician is not None]
    return StateRule(
        state="+".join(r.state for r in rules),
        contacts_per_7_days=min(caps) if caps else None,
        no_robocalls=any(r.no_robocalls for r in rules),
        bans_credit_reporting=any(r.bans_credit_reporting for r in rules),
        bans_refusal_of_care_wording=any(r.bans_refusal_of_care_wording for r in rules),
        limitations_years=min(years) if years else None,
        plan_cap_bp_hospital=min(hospital) if hospital else None,
        plan_cap_bp_clinician=min(clinician) if clinician else None,
        sources=tuple(s for r in rules for s in r.sources),
    )


def describe(rule: StateRule) -> list[str]:
    """What ``rule`` adds to the federal rules, one line each, with its sources last."""
    lines = []
    if rule.contacts_per_7_days is not None:
        lines.append(f"at most {rule.contacts_per_7_days} calls, texts or voicemails in 7 days")
    if rule.no_robocalls:
        lines.append("no automated calls for medical debt")
    if rule.bans_credit_reporting:
        lines.append("no credit reporting of medical debt")
    if rule.bans_refusal_of_care_wording:
        lines.append("no wording that care will be refused or delayed for an unpaid balance")
    if rule.limitations_years is not None:
        lines.append(
            f"statute of limitations {rule.limitations_years} years from the first date of"
            " service: no referral, final notice or other legal wording after it"
        )
    if rule.plan_cap_bp_hospital is not None:
        lines.append(
            f"hospital payment plans at most {rule.plan_cap_bp_hospital / 100:g}% of monthly income"
        )
    if rule.plan_cap_bp_clinician is not None:
        lines.append(
            f"clinicians' payment plans at most {rule.plan_cap_bp_clinician / 100:g}% of monthly"
            " income"
        )
    if rule.sources:
        lines.append("sources: " + "; ".join(rule.sources))
    return lines


REFUSAL_OF_CARE_PHRASES = (
    "refuse care",
    "refuse to see",
    "refuse treatment",
    "refuse service",
    "deny care",
    "deny treatment",
    "denied care",
    "no longer be able to see you",
    "no longer see you",
    "will not be seen",
    "cannot be seen",
    "can't be seen",
    "care will be refused",
    "care will be denied",
    "treatment will be refused",
    "future appointments will be cancelled",
    "future appointments will be canceled",
    "dismissed from the practice",
    "discharged from the practice",
    "until the balance is paid",
    "until your balance is paid",
    "negarle atención",
    "negar la atención",
    "no podremos atenderle",
    "no será atendido",
    "hasta que pague el saldo",
)
"""Wording that says care will be refused or delayed for an unpaid balance (Minn. Stat. 62J.806;
and never threaten what the practice will not do, DOMAIN.md)."""
