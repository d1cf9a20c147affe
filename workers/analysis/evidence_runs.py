"""Which matched windows get evidence (``model.evidence_windows``): the evidence text and the best-frame
thumbnail, what a person reads and looks at in an alert or on the review page. After the score pass they
are a matched window's costliest steps on a CPU (SmolVLM2-500M, fp32, 8 targets: evidence 29.6 and the
best-frame search 20.2 CPU seconds against 27.9 for scoring; docs/operations.md, Sizing).

``best_of_run`` (the default): for each target, only the best window of each run of consecutive matched
windows of a file: the highest P(yes), the first among equals, which is the window an alert on that run
carries (``vigil.alerts.matching``: a run's best window). That window gets the evidence text and the
best-frame search (its thumbnail is the frame the target is most visible in, the same frame
``every_match`` picks there); the run's other matched windows get neither: their thumbnail is the middle
of their sampled frames at source resolution, as an inherited window's is (``ThumbnailWriter.middle``),
one file per window shared by its targets. Inherited windows (the static gate) extend a run but never
replace its best (they copy a scored window's score and come after it). Each scored window's encoding and
frames are kept while it is some run's best (one row of its cache: the question rows are cropped off); a
window overtaken by a better one, or seen below the run's best, gets its middle-frame thumbnail at once
and is let go. The evidence and best frame are made when the run ends (an unmatched window of the target,
or the end of the file), all targets whose run ended on one window in one batched pass.
``every_match``: every matched window gets both, straight after its scoring (the behaviour before this
setting).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from vigil.ops.contracts import WindowResult
from workers.decode.frames import Frames
from workers.model.generation import rows_at_prefix
from workers.model.loading import LoadedModel
from workers.model.scoring import ScoredWindow
from workers.model.suffixes import ReferenceImage


@dataclass
class Kept:
    """A scored window with matches: its encoding and frames, while some result of it may be a run's best."""

    window: ScoredWindow
    frames: Frames
    index: int
    middle: str | None = None  # its middle-frame thumbnail, once written (shared by its targets)


@dataclass
class Match:
    """One matched result of a kept window, with its target's question."""

    result: WindowResult
    kept: Kept
    description: str
    references: Sequence[ReferenceImage]


# settle: the evidence and best frame of one window's matches (one batched pass); plain: the cheap
# thumbnail of a match that is no run's best
Settle = Callable[[Kept, list[Match]], None]
Plain = Callable[[Match], None]


class RunEvidence:
    """The open runs of one file's analysis, per target."""

    def __init__(self, loaded: LoadedModel, *, settle: Settle, plain: Plain) -> None:
        self.loaded = loaded
        self.settle = settle
        self.plain = plain
        self._offered: dict[int, Match] = {}  # by id() of a scored matched result, until seen
        self._best: dict[int, Match] = {}  # by target id: the best window of the target's open run

    def offer(self, matches: list[Match]) -> None:
        """A scored window's matched results, each with its target's question."""
        for match in matches:
            self._offered[id(match.result)] = match

    def see(self, results: Iterable[WindowResult]) -> None:
        """The analysis's results in window order: extend, start or end each target's run."""
        ended: list[Match] = []
        for result in results:
            offered = self._offered.pop(id(result), None)
            best = self._best.get(result.target_id)
            if not result.matched:
                if best is not None:
                    ended.append(self._best.pop(result.target_id))
            elif offered is None:  # inherited: extends the run, with its own thumbnail already
                continue
            elif best is None or result.p_yes > best.result.p_yes:
                if best is not None:
                    self.plain(best)  # overtaken: it can never be this run's best again
                rows_at_prefix(self.loaded, offered.kept.window.prefix, 1)  # one row, not the questions'
                self._best[result.target_id] = offered
            else:
                self.plain(offered)
        self._settle(ended)

    def finish(self) -> None:
        """The file ended: every open run's best window gets its evidence."""
        ended, self._best = list(self._best.values()), {}
        self._offered.clear()
        self._settle(ended)

    def _settle(self, ended: list[Match]) -> None:
        by_window: dict[int, list[Match]] = {}
        for match in ended:
            by_window.setdefault(id(match.kept), []).append(match)
        for matches in by_window.values():
            self.settle(matches[0].kept, matches)
