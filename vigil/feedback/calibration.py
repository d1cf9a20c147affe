"""Fit a target's threshold from labelled scores: the lowest threshold whose matches reach a precision.

Scores are P(yes). A label says whether the target was really there. Matching is `score >= threshold`, so
over the labelled scores, raising the threshold trades recall for precision. The fit keeps the most recall
among the thresholds that reach the wanted precision over at least a few matches, and says how many labels
it rests on. It refuses
(`NotEnoughLabels`) when either kind of label is too rare to say anything.

Shared by the targets page and `vigil calibrate`; pure Python, no database, no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vigil.errors import VigilError

MIN_EACH_KIND = 5
DEFAULT_PRECISION = 0.9


class NotEnoughLabels(VigilError):
    """Too few 'present' or 'absent' labels to fit a threshold."""


@dataclass(frozen=True)
class Labelled:
    score: float
    present: bool


@dataclass(frozen=True)
class Fit:
    precision_wanted: float
    threshold: float | None  # None: no threshold reaches the wanted precision
    precision: float  # of the matches at `threshold` (at the best threshold when none reaches it)
    recall: float  # share of the present labels kept at `threshold`
    matches: int  # labels at or above the threshold
    positives: int
    negatives: int

    @property
    def reached(self) -> bool:
        return self.threshold is not None

    @property
    def verdicts(self) -> int:
        return self.positives + self.negatives


def precision_recall(labels: Sequence[Labelled], threshold: float) -> tuple[float, float, int]:
    """Precision, recall and match count of `score >= threshold` over the labels."""
    hits = [item for item in labels if item.score >= threshold]
    true_hits = sum(item.present for item in hits)
    positives = sum(item.present for item in labels)
    precision = true_hits / len(hits) if hits else 1.0
    recall = true_hits / positives if positives else 0.0
    return precision, recall, len(hits)


def fit_threshold(
    labels: Iterable[Labelled], *, precision: float = DEFAULT_PRECISION, min_each: int = MIN_EACH_KIND
) -> Fit:
    """The lowest threshold whose matches have at least `precision`, halfway between two scores.

    A cut counts only when it keeps at least `min_each` matches: a precision of 1.0 over two matches is luck.
    """
    if not 0 < precision <= 1:
        raise ValueError("precision must be in (0, 1]")
    ranked = sorted(labels, key=lambda item: item.score, reverse=True)
    positives = sum(item.present for item in ranked)
    negatives = len(ranked) - positives
    if positives < min_each or negatives < min_each:
        raise NotEnoughLabels(
            f"needs at least {min_each} labels of each kind, has {positives} present and {negatives} absent"
        )
    best: tuple[int, int] | None = None  # (matches, true matches) at the lowest cut reaching precision
    best_precision, true_hits = 0.0, 0
    for i, item in enumerate(ranked, start=1):
        true_hits += item.present
        tie_next = i < len(ranked) and ranked[i].score == item.score
        if tie_next:
            continue  # a threshold cannot split equal scores
        if i < min_each:
            continue
        best_precision = max(best_precision, true_hits / i)
        if true_hits / i >= precision:
            best = (i, true_hits)
    if best is None:
        return Fit(precision, None, best_precision, 0.0, 0, positives, negatives)
    matches, kept = best
    lowest_kept = ranked[matches - 1].score
    below = ranked[matches].score if matches < len(ranked) else 0.0
    threshold = (lowest_kept + below) / 2
    return Fit(precision, threshold, kept / matches, kept / positives, matches, positives, negatives)


def histogram(scores: Iterable[float], *, bins: int = 20) -> list[int]:
    """Counts of scores in `bins` equal bins over [0, 1]; a score of exactly 1 falls in the last bin."""
    counts = [0] * bins
    for score in scores:
        counts[min(bins - 1, max(0, int(score * bins)))] += 1
    return counts
