"""The two synthetic sign languages: vocabularies, sign inventories, grammar and texts.

Both languages talk about the weather, like PHOENIX-2014T. The primary language has German
glosses and German texts (lexicon "de"), the auxiliary one Spanish glosses and texts ("es"), so
gloss names never collide. A configurable share of the auxiliary signs are *cross-lingual*: the
same motion as the primary sign for the same concept under another gloss name; the others have
their own motions, distinct from every other sign.

Sentences are 1-3 clauses from a small grammar. The text is a function of the glosses and the
cues: gloss order differs from word order, some words have no gloss ("wird es", "erst", "und"),
and the intensity cue (raised eyebrows + open mouth on a weather sign) changes the text ("starker
regen" instead of "regen") while the glosses stay the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipelines.synthetic.motion import INTENSE
from pipelines.synthetic.primitives import SignPrimitive, sample_inventory

LEXICONS = ("de", "es")


@dataclass(frozen=True)
class Word:
    """A concept in one language: its gloss and its text (plain, with the cue, negated)."""

    gloss: str
    text: str
    intense: str | None = None
    negated: str | None = None


@dataclass(frozen=True)
class Concept:
    key: str
    category: str  # time | region | weather | temperature | number | unit | negation | also | change
    de: Word
    es: Word
    head: str | None = None  # lexical head movement of the sign, in both languages

    def word(self, lexicon: str) -> Word:
        return getattr(self, lexicon)


def _w(gloss: str, text: str, intense: str | None = None, negated: str | None = None) -> Word:
    return Word(gloss, text, intense, negated)


CONCEPTS: tuple[Concept, ...] = (
    Concept("tomorrow", "time", _w("MORGEN", "morgen"), _w("MANANA", "mañana")),
    Concept("today", "time", _w("HEUTE", "heute"), _w("HOY", "hoy")),
    Concept("evening", "time", _w("ABEND", "am abend"), _w("TARDE", "por la tarde")),
    Concept("night", "time", _w("NACHT", "in der nacht"), _w("NOCHE", "por la noche")),
    Concept("later", "time", _w("SPAETER", "später"), _w("LUEGO", "más tarde")),
    Concept("weekend", "time", _w("WOCHENENDE", "am wochenende"), _w("FINDE", "el fin de semana")),
    Concept("monday", "time", _w("MONTAG", "am montag"), _w("LUNES", "el lunes")),
    Concept("sunday", "time", _w("SONNTAG", "am sonntag"), _w("DOMINGO", "el domingo")),
    Concept("north", "region", _w("NORD", "im norden"), _w("NORTE", "en el norte")),
    Concept("south", "region", _w("SUED", "im süden"), _w("SUR", "en el sur")),
    Concept("west", "region", _w("WEST", "im westen"), _w("OESTE", "en el oeste")),
    Concept("east", "region", _w("OST", "im osten"), _w("ESTE", "en el este")),
    Concept("mountains", "region", _w("BERG", "in den bergen"), _w("MONTANA", "en las montañas")),
    Concept("coast", "region", _w("KUESTE", "an der küste"), _w("COSTA", "en la costa")),
    Concept("centre", "region", _w("MITTE", "in der mitte"), _w("CENTRO", "en el centro")),
    Concept("rain", "weather", _w("REGEN", "regen", "starker regen", "kein regen"), _w("LLUVIA", "lluvia", "lluvia intensa", "no habrá lluvia")),
    Concept("snow", "weather", _w("SCHNEE", "schnee", "viel schnee", "kein schnee"), _w("NIEVE", "nieve", "mucha nieve", "no habrá nieve")),
    Concept("wind", "weather", _w("WIND", "wind", "stürmischer wind", "kein wind"), _w("VIENTO", "viento", "viento fuerte", "no habrá viento")),
    Concept("fog", "weather", _w("NEBEL", "nebel", "dichter nebel", "kein nebel"), _w("NIEBLA", "niebla", "niebla densa", "no habrá niebla")),
    Concept("thunderstorm", "weather", _w("GEWITTER", "gewitter", "schwere gewitter", "keine gewitter"), _w("TORMENTA", "tormentas", "tormentas fuertes", "no habrá tormentas")),
    Concept("sun", "weather", _w("SONNE", "sonne", "viel sonne", "keine sonne"), _w("SOL", "sol", "mucho sol", "no habrá sol")),
    Concept("cloud", "weather", _w("WOLKE", "wolken", "dichte wolken", "keine wolken"), _w("NUBE", "nubes", "muchas nubes", "no habrá nubes")),
    Concept("hail", "weather", _w("HAGEL", "hagel", "starker hagel", "kein hagel"), _w("GRANIZO", "granizo", "granizo fuerte", "no habrá granizo")),
    Concept("frost", "weather", _w("FROST", "frost", "strenger frost", "kein frost"), _w("HELADA", "heladas", "heladas fuertes", "no habrá heladas")),
    Concept("shower", "weather", _w("SCHAUER", "schauer", "kräftige schauer", "keine schauer"), _w("CHUBASCO", "chubascos", "chubascos fuertes", "no habrá chubascos")),
    Concept("warm", "temperature", _w("WARM", "warm"), _w("CALOR", "hará calor")),
    Concept("cold", "temperature", _w("KALT", "kalt"), _w("FRIO", "hará frío")),
    Concept("cool", "temperature", _w("KUEHL", "kühl"), _w("FRESCO", "hará fresco")),
    Concept("mild", "temperature", _w("MILD", "mild"), _w("TEMPLADO", "estará templado")),
    Concept("zero", "number", _w("NULL", "null"), _w("CERO", "cero")),
    Concept("five", "number", _w("FUENF", "fünf"), _w("CINCO", "cinco")),
    Concept("ten", "number", _w("ZEHN", "zehn"), _w("DIEZ", "diez")),
    Concept("twenty", "number", _w("ZWANZIG", "zwanzig"), _w("VEINTE", "veinte")),
    Concept("thirty", "number", _w("DREISSIG", "dreißig"), _w("TREINTA", "treinta")),
    Concept("degree", "unit", _w("GRAD", "grad"), _w("GRADO", "grados")),
    Concept("not", "negation", _w("NICHT", "nicht"), _w("NO", "no"), head="shake"),
    Concept("also", "also", _w("AUCH", "auch"), _w("TAMBIEN", "también"), head="nod"),
    Concept("change", "change", _w("WECHSEL", "dann"), _w("CAMBIO", "y luego"), head="tilt"),
)
_BY_KEY = {c.key: c for c in CONCEPTS}

# Which concepts a vocabulary of size n holds: the first n of its order. Both orders start with
# the same core (so tiny vocabularies share concepts) and then differ, so mid-sized vocabularies
# hold some concepts the other language lacks (see `vocabulary`).
_CORE = ("tomorrow", "north", "rain", "south", "snow", "today", "wind", "cold")
CONCEPT_ORDER = {
    "primary": _CORE + (
        "fog", "west", "sun", "not", "east", "warm", "degree", "ten", "also", "evening", "thunderstorm", "cloud", "twenty",
        "night", "change", "five", "mountains", "coast", "mild", "hail", "later", "frost", "weekend", "monday", "sunday",
        "centre", "shower", "cool", "thirty", "zero",
    ),
    "auxiliary": _CORE + (
        "degree", "zero", "cool", "shower", "centre", "sunday", "thirty", "weekend", "frost", "later", "hail", "change",
        "mild", "coast", "mountains", "five", "night", "twenty", "cloud", "thunderstorm", "evening", "also", "monday",
        "not", "fog", "west", "sun", "east", "warm", "ten",
    ),
}  # fmt: skip
assert all(sorted(order) == sorted(_BY_KEY) for order in CONCEPT_ORDER.values())


@dataclass(frozen=True)
class LanguageSpec:
    """What the config asks of one language."""

    code: str
    name: str
    lexicon: str  # "de" | "es": gloss names and text language
    vocab_size: int


@dataclass(frozen=True)
class SignLanguage:
    """A sign language's inventory: its concepts (in vocabulary order) and one primitive per gloss."""

    code: str
    name: str
    lexicon: str
    role: str  # "primary" | "auxiliary"
    concepts: tuple[Concept, ...]
    primitives: dict[str, SignPrimitive] = field(hash=False)

    @property
    def glosses(self) -> list[str]:
        return [c.word(self.lexicon).gloss for c in self.concepts]

    def gloss(self, concept: Concept) -> str:
        return concept.word(self.lexicon).gloss


def build_languages(seed: int, primary: LanguageSpec, auxiliary: LanguageSpec, cross_lingual_share: float) -> tuple[SignLanguage, SignLanguage, dict[str, str]]:
    """Both inventories and the ground-truth mapping {auxiliary gloss: primary gloss}.

    round(cross_lingual_share × auxiliary vocabulary) auxiliary signs (at most the number of
    concepts both languages have) reuse the primary sign of the same concept exactly.
    """
    if primary.lexicon == auxiliary.lexicon:
        raise ValueError(f"both languages use lexicon {primary.lexicon!r}: gloss names would collide")
    for spec in (primary, auxiliary):
        if spec.lexicon not in LEXICONS:
            raise ValueError(f"language {spec.code!r}: unknown lexicon {spec.lexicon!r} (known: {LEXICONS})")
        if not 3 <= spec.vocab_size <= len(CONCEPTS):
            raise ValueError(f"language {spec.code!r}: vocab_size must be 3..{len(CONCEPTS)}, got {spec.vocab_size}")
    rng = np.random.default_rng([seed, 1])
    concepts_a = tuple(_BY_KEY[k] for k in vocabulary("primary", primary.vocab_size))
    concepts_b = tuple(_BY_KEY[k] for k in vocabulary("auxiliary", auxiliary.vocab_size))
    prims_a = sample_inventory(rng, [c.head for c in concepts_a], [])
    by_concept_a = dict(zip((c.key for c in concepts_a), prims_a))

    shared = [c for c in concepts_b if c.key in by_concept_a]
    count = min(len(shared), round(cross_lingual_share * len(concepts_b)))
    crossing = {shared[i].key for i in rng.choice(len(shared), size=count, replace=False)}
    unique = [c for c in concepts_b if c.key not in crossing]
    by_concept_b = dict(zip((c.key for c in unique), sample_inventory(rng, [c.head for c in unique], prims_a)))
    by_concept_b.update({k: by_concept_a[k] for k in crossing})

    lang_a = SignLanguage(primary.code, primary.name, primary.lexicon, "primary", concepts_a, {c.word(primary.lexicon).gloss: by_concept_a[c.key] for c in concepts_a})
    lang_b = SignLanguage(auxiliary.code, auxiliary.name, auxiliary.lexicon, "auxiliary", concepts_b, {c.word(auxiliary.lexicon).gloss: by_concept_b[c.key] for c in concepts_b})
    mapping = {c.word(auxiliary.lexicon).gloss: c.word(primary.lexicon).gloss for c in concepts_b if c.key in crossing}
    return lang_a, lang_b, dict(sorted(mapping.items()))


def vocabulary(role: str, size: int) -> list[str]:
    """The concept keys of a `role` vocabulary of `size`: the first ones of its order, skipping any
    the grammar could not use at that size (a unit without numbers or numbers without a unit)."""
    order = list(CONCEPT_ORDER[role])
    chosen, rest = order[:size], order[size:]
    while bad := unusable_concepts(tuple(chosen)):
        if not rest:
            raise ValueError(f"no usable {role} vocabulary of size {size}")
        chosen.remove(bad[0])
        chosen.append(rest.pop(0))
    return chosen


# --- grammar ----------------------------------------------------------------------------------
# Clause → (gloss order of its slots, text template per lexicon). "?" marks an optional slot.
CLAUSES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "forecast": (("time?", "region?", "weather"), {"de": "{time} {weather} {region}", "es": "{time} {weather} {region}"}),
    "temperature": (("time?", "region", "temperature"), {"de": "{time} {region} wird es {temperature}", "es": "{time} {region} {temperature}"}),
    "degrees": (("region", "number", "unit"), {"de": "{region} {number} {unit}", "es": "{region} {number} {unit}"}),
    "negation": (("region", "weather", "negation"), {"de": "{region} {negated}", "es": "{region} {negated}"}),
    "also": (("weather", "region", "also"), {"de": "{also} {region} {weather}", "es": "{weather} {also} {region}"}),
    "change": (("weather", "change", "weather2"), {"de": "erst {weather} {change} {weather2}", "es": "primero {weather} {change} {weather2}"}),
}
CLAUSE_WEIGHTS = {"forecast": 4.0, "temperature": 1.5, "degrees": 1.0, "negation": 1.0, "also": 1.0, "change": 1.0}
CONJUNCTION = {"de": "und", "es": "y"}
CUE_SLOTS = {"forecast", "also", "change"}  # clauses whose weather signs may carry the intensity cue


@dataclass(frozen=True)
class Sentence:
    """A signed sentence: glosses, the cue on each sign (None or "intense") and its text."""

    glosses: tuple[str, ...]
    cues: tuple[str | None, ...]
    text: str


def _slot_category(slot: str) -> str:
    return slot.rstrip("?").rstrip("2")


def _clauses_for(categories: list[str]) -> list[str]:
    """Clauses whose required slots a vocabulary with these concept categories can fill."""
    out = []
    for name, (slots, _) in CLAUSES.items():
        required = [_slot_category(slot) for slot in slots if not slot.endswith("?")]
        if all(categories.count(c) >= required.count(c) for c in set(required)):
            out.append(name)
    return out


def available_clauses(lang: SignLanguage) -> list[str]:
    """Clauses the language's vocabulary can build."""
    return _clauses_for([c.category for c in lang.concepts])


def unusable_concepts(keys: tuple[str, ...]) -> list[str]:
    """Concepts of a vocabulary (by key) that no buildable clause has a slot for."""
    categories = [_BY_KEY[k].category for k in keys]
    usable = {_slot_category(slot) for name in _clauses_for(categories) for slot in CLAUSES[name][0]}
    return [k for k, c in zip(keys, categories) if c not in usable]


def _clause(lang: SignLanguage, name: str, rng: np.random.Generator, first: bool, intense_prob: float) -> tuple[list[tuple[str, str | None]], str]:
    """One clause: [(gloss, cue)] in signing order and its text."""
    slots, templates = CLAUSES[name]
    by_category: dict[str, list[Concept]] = {}
    for c in lang.concepts:
        by_category.setdefault(c.category, []).append(c)
    chosen: dict[str, Concept] = {}
    for slot in slots:
        category = _slot_category(slot)
        if slot.endswith("?") and (category not in by_category or (category == "time" and not first) or rng.random() < 0.25):
            continue
        options = [c for c in by_category[category] if c not in chosen.values()]
        chosen[slot.rstrip("?")] = options[rng.integers(len(options))]
    if name == "forecast" and not {"time", "region"} & chosen.keys():
        chosen["region"] = by_category["region"][rng.integers(len(by_category["region"]))]
    signs, words = [], {}
    for slot in slots:
        key = slot.rstrip("?")
        if key not in chosen:
            words[key] = ""
            continue
        word = chosen[key].word(lang.lexicon)
        cue = INTENSE if key.startswith("weather") and name in CUE_SLOTS and rng.random() < intense_prob else None
        signs.append((word.gloss, cue))
        words[key] = word.intense if cue else word.text
        if key == "weather" and word.negated:
            words["negated"] = word.negated
    return signs, " ".join(templates[lang.lexicon].format(**words).split())


def sample_sentence(lang: SignLanguage, rng: np.random.Generator, min_signs: int = 3, max_signs: int = 7, intense_prob: float = 0.3) -> Sentence:
    """A random sentence of min_signs..max_signs signs without immediately repeated glosses."""
    names = available_clauses(lang)
    if not names:
        raise ValueError(f"language {lang.code!r}: vocabulary too small for any clause")
    weights = np.array([CLAUSE_WEIGHTS[n] for n in names])
    weights /= weights.sum()
    for _ in range(1000):
        signs: list[tuple[str, str | None]] = []
        texts = []
        for k in range(int(rng.choice([1, 2, 3], p=[0.6, 0.32, 0.08]))):
            clause_signs, text = _clause(lang, str(rng.choice(names, p=weights)), rng, k == 0, intense_prob)
            signs += clause_signs
            texts.append(text)
        glosses = [g for g, _ in signs]
        if min_signs <= len(signs) <= max_signs and all(a != b for a, b in zip(glosses, glosses[1:])):
            text = f" {CONJUNCTION[lang.lexicon]} ".join(texts) + " ."
            return Sentence(tuple(glosses), tuple(c for _, c in signs), text)
    raise ValueError(f"language {lang.code!r}: cannot build a sentence of {min_signs}..{max_signs} signs from clauses {names}")
