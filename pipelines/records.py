"""The one sample record every corpus reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Sample:
    """One continuous signing video and its annotation.

    name: corpus-unique id (e.g. PHOENIX `01April_2010_Thursday_heute-6694`).
    split: "train" | "dev" | "test".
    signer: signer id as the corpus gives it ("" when unknown).
    glosses: the gloss sequence, as annotated (no clean-up applied).
    text: the spoken-language translation, or None (PHOENIX-2014 has none).
    num_frames: frame count from the annotation, or None when the corpus file does not say.
    video: where the video is, relative to the corpus' video root: a file (`x.mp4`), a frame
        folder glob (`name/1/*.png`) or a folder; None when unknown.
    language: sign language code of the corpus (e.g. "dgs", "csl", or a synthetic language).
    """

    name: str
    split: str
    signer: str
    glosses: tuple[str, ...]
    text: str | None
    num_frames: int | None
    video: str | None
    language: str
    extra: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def gloss_string(self) -> str:
        return " ".join(self.glosses)
