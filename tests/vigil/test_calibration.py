"""The threshold fit on synthetic scores drawn from two known distributions, with the answer worked out
analytically here (not by the code under test)."""

from __future__ import annotations

import random

import pytest

from vigil.feedback.calibration import Labelled, NotEnoughLabels, fit_threshold, histogram, precision_recall

# Present scores ~ U(0.5, 1), absent ~ U(0, 0.7), as many of each. Above t in [0.5, 0.7] the present share
# kept is (1 - t) / 0.5 and the absent share (0.7 - t) / 0.7; precision = p / (p + a).


def population_precision(t: float) -> float:
    kept_present = min(1.0, (1 - t) / 0.5)
    kept_absent = max(0.0, min(1.0, (0.7 - t) / 0.7))
    return kept_present / (kept_present + kept_absent)


def solve(precision: float) -> float:
    low, high = 0.5, 0.7  # precision rises with t on this interval
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if population_precision(mid) < precision else (low, mid)
    return high


def draw(n: int, seed: int) -> list[Labelled]:
    rng = random.Random(seed)
    present = [Labelled(rng.uniform(0.5, 1.0), True) for _ in range(n)]
    absent = [Labelled(rng.uniform(0.0, 0.7), False) for _ in range(n)]
    return present + absent


@pytest.mark.parametrize("wanted", [0.8, 0.9, 0.95])
def test_fit_finds_the_known_threshold_and_reports_its_precision_and_recall(wanted: float) -> None:
    labels = draw(20_000, seed=int(wanted * 100))
    fit = fit_threshold(labels, precision=wanted)
    expected = solve(wanted)
    assert fit.threshold == pytest.approx(expected, abs=0.01)
    assert fit.precision >= wanted
    assert fit.recall == pytest.approx(min(1.0, (1 - expected) / 0.5), abs=0.01)
    # What it reports is what the threshold does on these labels.
    precision, recall, matches = precision_recall(labels, fit.threshold or 0)
    assert (precision, recall, matches) == (fit.precision, fit.recall, fit.matches)
    assert (fit.positives, fit.negatives, fit.verdicts) == (20_000, 20_000, 40_000)


def test_fit_keeps_the_most_recall_among_thresholds_reaching_precision() -> None:
    labels = draw(500, seed=7)
    fit = fit_threshold(labels, precision=0.9)
    assert fit.threshold is not None
    lower = sorted({item.score for item in labels if item.score < fit.threshold}, reverse=True)
    for cut in lower[:50]:  # every lower cut falls short of the precision
        assert precision_recall(labels, cut)[0] < 0.9


def test_precision_one_puts_the_threshold_above_every_absent_score() -> None:
    labels = draw(2_000, seed=3)
    fit = fit_threshold(labels, precision=1.0)
    highest_absent = max(item.score for item in labels if not item.present)
    assert fit.threshold is not None and fit.threshold > highest_absent
    assert fit.precision == 1.0


def test_unreachable_precision_is_reported_not_invented() -> None:
    # Present and absent alternate along the scores: precision sits near 0.5 at every threshold
    # (at the very top, one present score alone would be a precision of 1.0: too few matches to count).
    labels = [Labelled(i / 400, i % 2 == 1) for i in range(400)]
    fit = fit_threshold(labels, precision=0.99)
    assert not fit.reached and fit.threshold is None and fit.recall == 0.0
    assert fit.precision < 0.99


def test_ties_are_never_split() -> None:
    labels = [Labelled(0.8, True)] * 6 + [Labelled(0.8, False)] + [Labelled(0.2, False)] * 6
    fit = fit_threshold(labels, precision=0.85)
    assert fit.threshold == pytest.approx(0.5) and fit.matches == 7


@pytest.mark.parametrize(("present", "absent"), [(4, 50), (50, 4), (0, 0)])
def test_too_few_of_either_kind_is_refused(present: int, absent: int) -> None:
    labels = [Labelled(0.9, True)] * present + [Labelled(0.1, False)] * absent
    with pytest.raises(NotEnoughLabels, match=f"has {present} present and {absent} absent"):
        fit_threshold(labels)


def test_histogram_bins() -> None:
    assert histogram([0.0, 0.049, 0.05, 0.5, 0.99, 1.0], bins=20) == [2, 1] + [0] * 8 + [1] + [0] * 8 + [2]
