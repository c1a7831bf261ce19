"""The deterministic split of the images into a tuning part, which the search sees, and a confirmation
part, which only the final check sees.

An image's part depends only on its file name (and parent folder), the seed and the fraction: a keyed
hash orders the images, and the first ``confirmation_fraction`` of that order confirms. The same folder
therefore splits the same way on every machine and in every order of listing, and the split is recorded
(the rule and both file lists) in the tuning report.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

from ..datasets import LabelledImage
from ..errors import UserError

DEFAULT_CONFIRMATION_FRACTION = 0.4
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Split:
    tuning: list[LabelledImage]
    confirmation: list[LabelledImage]
    seed: int
    confirmation_fraction: float

    def record(self) -> dict:
        """What the report stores: the rule and both lists of files."""
        return {
            "rule": "images ordered by sha256(f'{seed}:{parent folder}/{file name}'); the first "
                    "round(fraction × images) confirm, the rest tune",
            "seed": self.seed,
            "confirmation_fraction": self.confirmation_fraction,
            "tuning": [str(image.path) for image in self.tuning],
            "confirmation": [str(image.path) for image in self.confirmation],
        }


def _key(image: LabelledImage, seed: int) -> str:
    name = f"{seed}:{image.path.parent.name}/{image.path.name}"
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def split_images(images: Sequence[LabelledImage], confirmation_fraction: float = DEFAULT_CONFIRMATION_FRACTION,
                 seed: int = DEFAULT_SEED) -> Split:
    """Split ``images`` (at least 2) so that each part holds at least one image; both parts keep the
    images' original order."""
    if not 0 < confirmation_fraction < 1:
        raise UserError(f"the confirmation fraction must lie between 0 and 1, got {confirmation_fraction}")
    if len(images) < 2:
        raise UserError(f"tuning needs at least 2 images (a tuning and a confirmation part), got {len(images)}")
    order = sorted(range(len(images)), key=lambda index: (_key(images[index], seed), index))
    count = min(len(images) - 1, max(1, round(confirmation_fraction * len(images))))
    confirming = set(order[:count])
    return Split(
        tuning=[image for index, image in enumerate(images) if index not in confirming],
        confirmation=[image for index, image in enumerate(images) if index in confirming],
        seed=seed,
        confirmation_fraction=confirmation_fraction,
    )
