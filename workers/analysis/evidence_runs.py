"""Which matched windows get evidence (``model.evidence_windows``): evidence is read by a person in an
alert or on the review page, and generating it is the costliest step of a matched window on a CPU.

``best_of_run`` (the default): for each target, only the best window of each run of consecutive matched
windows of a file: the highest P(yes), the first among equals, which is the window an alert on that run
carries (``vigil.alerts.matching``: a run's best window). Inherited windows (the static gate) extend a run
but never replace its best (they copy a scored window's score and come after it). Each scored window's
encoding is kept while it is some run's best (one row of its cache: the question rows are cropped off), and
the evidence is generated when the run ends (an unmatched window of the target, or the end of the file),
all targets whose run ended on one window in one batched decode. ``every_match``: every matched window,
straight after its scoring (the behaviour before this setting).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from vigil.ops.contracts import WindowResult
from workers.model.generation import rows_at_prefix
from workers.model.loading import LoadedModel
from workers.model.scoring import ScoredWindow
from workers.model.suffixes import ReferenceImage

Generate = Callable[[ScoredWindow, list[str], list[Sequence[ReferenceImage]]], list[str]]


@dataclass
class _Best:
    result: WindowResult
    window: ScoredWindow
    description: str
    references: Sequence[ReferenceImage]


class RunEvidence:
    """The open runs of one file's analysis, per target; ``generate`` writes the evidence of a window."""

    def __init__(self, loaded: LoadedModel, generate: Generate) -> None:
        self.loaded = loaded
        self.generate = generate
        self._offered: dict[int, _Best] = {}  # by id() of a scored matched result, until seen
        self._best: dict[int, _Best] = {}  # by target id: the best window of the target's open run

    def offer(
        self,
        window: ScoredWindow,
        results: list[WindowResult],
        descriptions: list[str],
        references: list[Sequence[ReferenceImage]],
    ) -> None:
        """A scored window's matched results (with their targets' descriptions and references)."""
        for result, description, refs in zip(results, descriptions, references, strict=True):
            self._offered[id(result)] = _Best(result, window, description, refs)

    def see(self, results: Iterable[WindowResult]) -> None:
        """The analysis's results in window order: extend, start or end each target's run."""
        ended: list[_Best] = []
        for result in results:
            offered = self._offered.pop(id(result), None)
            best = self._best.get(result.target_id)
            if not result.matched:
                if best is not None:
                    ended.append(self._best.pop(result.target_id))
            elif offered is not None and (best is None or result.p_yes > best.result.p_yes):
                rows_at_prefix(self.loaded, offered.window.prefix, 1)  # keep one row, not the questions'
                self._best[result.target_id] = offered
        self._write(ended)

    def finish(self) -> None:
        """The file ended: every open run's best window gets its evidence."""
        ended, self._best = list(self._best.values()), {}
        self._offered.clear()
        self._write(ended)

    def _write(self, ended: list[_Best]) -> None:
        by_window: dict[int, list[_Best]] = {}
        for best in ended:
            by_window.setdefault(id(best.window), []).append(best)
        for bests in by_window.values():
            texts = self.generate(
                bests[0].window, [b.description for b in bests], [b.references for b in bests]
            )
            for best, text in zip(bests, texts, strict=True):
                best.result.evidence = text
