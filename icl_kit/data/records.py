"""The question record every stage passes around."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from icl_kit.core.errors import KitError


@dataclass(frozen=True)
class Record:
    """One visual question with its 10 annotator answers.

    `answer` is the most frequent of `answers` (ties: the first listed); it is
    the answer shown when this record is a demonstration.
    """

    question_id: int
    image_id: int
    question: str
    answers: tuple[str, ...]
    answer: str
    question_type: str
    answer_type: str
    image_path: Path

    def image(self) -> Image.Image:
        """Load the image lazily as RGB; a missing or unreadable file is a KitError."""
        self._check_exists()
        try:
            with Image.open(self.image_path) as im:
                return im.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise self._unreadable(exc) from None

    def image_size(self) -> tuple[int, int]:
        """(width, height) from the file header only; a missing or unreadable file is a KitError."""
        self._check_exists()
        try:
            with Image.open(self.image_path) as im:
                return im.size
        except (UnidentifiedImageError, OSError) as exc:
            raise self._unreadable(exc) from None

    def _check_exists(self) -> None:
        if not self.image_path.is_file():
            raise KitError(
                f"Image {self.image_path} for question {self.question_id} is missing; "
                "check data.image_root (or COCO_PATH)."
            )

    def _unreadable(self, exc: Exception) -> KitError:
        return KitError(
            f"Image {self.image_path} for question {self.question_id} cannot be read "
            f"({exc.__class__.__name__}); replace the file."
        )
