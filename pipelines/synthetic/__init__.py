"""The synthetic two-language signing corpus — the project's embedded default.

signer.py      the articulated 2D signer: pose vector → COCO-WholeBody keypoints → RGB frame
primitives.py  sign primitives (hand shape, location, path, orientation, hands, head) and sampling
motion.py      co-articulation: a sentence of primitives → one pose per frame + sign spans
language.py    the two languages' vocabularies, inventories, cross-lingual mapping, grammar, texts
generate.py    rendering a video and writing the corpus files (the job is jobs/synthesize.py)
"""

from pipelines.synthetic.language import LanguageSpec, Sentence, SignLanguage, build_languages, sample_sentence
from pipelines.synthetic.motion import CUES, INTENSE, MotionParams
from pipelines.synthetic.signer import SignerStyle

__all__ = [
    "CUES",
    "INTENSE",
    "LanguageSpec",
    "MotionParams",
    "Sentence",
    "SignLanguage",
    "SignerStyle",
    "build_languages",
    "sample_sentence",
]
