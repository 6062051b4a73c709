"""The study's indices: positions in the question-id-sorted split (docs/study.md, "Pools").

The existing study names every ICD, anchor, RL query and candidate by its position in the
split sorted by `question_id` ascending, never by the question id itself. `SplitPositions`
maps between the two for one split and says clearly when a file was made on another split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from icl_kit.core.errors import KitError
from icl_kit.data.records import Record


class SplitPositions:
    """Positions <-> question ids of one split, sorted by question id (the study's `idx`)."""

    def __init__(self, records: Iterable[Record], split: str = "train") -> None:
        self.split = split
        self.ids: list[int] = sorted(r.question_id for r in records)
        self._pos = {q: i for i, q in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def qid(self, position: int, where: str = "") -> int:
        """The question id at `position`; a position outside the split is a KitError naming `where`."""
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < len(self.ids):
            at = f" ({where})" if where else ""
            raise KitError(f"Position {position!r}{at} is outside the {self.split} split of {len(self.ids)} "
                           "questions; the file was made on another split or subsample: point data.root at "
                           "the split it was made on.")
        return self.ids[position]

    def qids(self, positions: Sequence[int], where: str = "") -> list[int]:
        return [self.qid(int(p), where) for p in positions]

    def position(self, question_id: int) -> int:
        if question_id not in self._pos:
            raise KitError(f"Question id {question_id} is not in the {self.split} split.")
        return self._pos[question_id]

    def has_id(self, question_id: int) -> bool:
        return question_id in self._pos
