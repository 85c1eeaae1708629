"""Honest statistics for a champion and challenger comparison (pure functions over numbers).

- **Effect**: the challenger's mean minus the champion's, with a bootstrap confidence interval
  (``scipy.stats.bootstrap``, BCa, resampling each arm on its own: the arms are independent
  samples). Collections outcomes are skewed (most balances pay nothing, a few pay thousands), so
  the interval makes no normality assumption.
- **Tests**: Welch's t-test (unequal variances) on the means, and Mann-Whitney U as a check that
  does not hinge on a few large payments.
- **Sample size**: the balances each arm needs to detect the stated minimum effect with the
  stated power at level alpha, from the normal approximation with the observed spread and the
  arms' split: ``n_challenger = (1 + 1/r) * sd^2 * (z(1 - alpha/2) + z(power))^2 / mde^2`` with
  ``r = n_champion / n_challenger``.
- **Guards**: a challenger's rate of a harm against a fixed ceiling and against the champion's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from models.experiment import Guard

SMALL_SAMPLE = 30
"""Below this many balances in an arm, no interval is trusted whatever the arithmetic says."""


@dataclass(frozen=True)
class Effect:
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
    """Balances the challenger needs (the champion its share's multiple) to detect the effect."""
    warning: str | None

    @property
    def significant(self) -> bool:
        return (
            self.warning is None
            and self.ci_low is not None
            and self.ci_high is not None
            and (self.ci_low > 0 or self.ci_high < 0)
        )


def _diff_of_means(x: NDArray[np.float64], y: NDArray[np.float64], axis: int = -1) -> object:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def required_sample(
    sd: float, mde: float, alpha: float, power: float, ratio: float = 1.0
) -> int | None:
    """Challenger balances needed to detect a difference of ``mde`` (None without a spread).

    ``ratio`` is champion balances per challenger balance (9 for a 90/10 split).
    """
    if not math.isfinite(sd) or sd <= 0 or mde <= 0 or ratio <= 0:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return math.ceil((1 + 1 / ratio) * sd**2 * float(z) ** 2 / mde**2)


def compare(
    champion: Sequence[float] | NDArray[np.float64],
    challenger: Sequence[float] | NDArray[np.float64],
    *,
    mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float | None = None,
    resamples: int = 2000,
    seed: int = 14,
) -> Effect:
    """Challenger minus champion on per-balance values, with interval, tests and sample size."""
    a = np.asarray(champion, dtype=np.float64)
    b = np.asarray(challenger, dtype=np.float64)
    na, nb = len(a), len(b)
    mean_a = float(a.mean()) if na else math.nan
    mean_b = float(b.mean()) if nb else math.nan
    if na >= 2 and nb >= 2:
        pooled = math.sqrt(
            ((na - 1) * float(a.var(ddof=1)) + (nb - 1) * float(b.var(ddof=1))) / (na + nb - 2)
        )
    else:
        pooled = math.nan
    split = ratio if ratio is not None else (na / nb if na and nb else 1.0)
    needed = required_sample(pooled, mde, alpha, power, split)
    low = high = p_welch = p_mw = None
    if na >= 2 and nb >= 2:
        if np.ptp(np.concatenate([a, b])) == 0:
            low = high = 0.0
        else:

            def interval(method: str) -> tuple[float, float]:
                result = stats.bootstrap(
                    (b, a),
                    _diff_of_means,
                    vectorized=True,
                    paired=False,
                    confidence_level=1 - alpha,
                    n_resamples=resamples,
                    method=method,
                    random_state=np.random.default_rng(seed),
                )
                ci = result.confidence_interval
                return float(ci.low), float(ci.high)

            low, high = interval("BCa")
            if not (math.isfinite(low) and math.isfinite(high)):  # BCa degenerate: percentile
                low, high = interval("percentile")
            p_welch = float(stats.ttest_ind(b, a, equal_var=False).pvalue)
            p_mw = float(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue)
    warning = None
    smallest = min(na, nb)
    if smallest < SMALL_SAMPLE:
        warning = (
            f"too few balances to judge: {smallest} in the smaller arm"
            f" (at least {SMALL_SAMPLE} before any interval means much)"
        )
    elif needed is not None and nb < needed:
        warning = (
            f"sample too small: the challenger has {nb} balances of the {needed} needed to"
            f" detect a difference of {mde:g} with {power:.0%} power; do not act on it yet"
        )
    return Effect(
        n_champion=na,
        n_challenger=nb,
        mean_champion=mean_a,
        mean_challenger=mean_b,
        difference=mean_b - mean_a,
        ci_low=low,
        ci_high=high,
        confidence=1 - alpha,
        p_welch=p_welch,
        p_mann_whitney=p_mw,
        required_per_challenger=needed,
        warning=warning,
    )


def guard_breach(
    guard: Guard, champion_hits: int, champion_n: int, challenger_hits: int, challenger_n: int
) -> str | None:
    """Why the guard stops the challenger, or None (also while the arm is under min_balances)."""
    if challenger_n < guard.min_balances:
        return None
    rate = challenger_hits / challenger_n
    base = champion_hits / champion_n if champion_n else 0.0
    name = guard.metric.value.replace("_", "-")
    if guard.max_rate is not None and rate > guard.max_rate:
        return (
            f"{name} {rate:.1%} of {challenger_n} balances above the ceiling {guard.max_rate:.1%}"
        )
    if guard.max_excess is not None and rate - base > guard.max_excess:
        return (
            f"{name} {rate:.1%} of {challenger_n} balances, {100 * (rate - base):.1f} points above"
            f" the champion's {base:.1%} (limit {100 * guard.max_excess:.1f})"
        )
    return None
