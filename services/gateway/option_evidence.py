"""What a question's options say about its type: the planner's evidence beyond the wording.

An operator may phrase a question any way, but the answers it offers are
constrained by what it asks: Yes/No (or pass/fail) asks Anomaly Detection,
defect names ask Defect Classification, positions ask Defect Localization,
consequences ask Defect Analysis, visual descriptions ask Defect Description,
product names ask Object Classification, and counts, colours, materials or
shapes ask Object Analysis. Each type gets the share of options that look like
its answers (0..1); the planner adds that to the wording's score.

The vocabularies are generic inspection words, plus the defect names the
caller knows (the knowledge base's defect types and display names).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from services.mmad.types import (
    ANOMALY_DETECTION,
    DEFECT_ANALYSIS,
    DEFECT_CLASSIFICATION,
    DEFECT_DESCRIPTION,
    DEFECT_LOCALIZATION,
    OBJECT_ANALYSIS,
    OBJECT_CLASSIFICATION,
    QUESTION_TYPES,
)

_WORD = re.compile(r"[a-z0-9]+")


def _vocab(text: str) -> frozenset[str]:
    return frozenset(text.split())


# A two-way verdict: yes/no, or its inspection synonyms.
_VERDICT_HEADS = _vocab(
    """
    yes no true false good bad ok okay ng pass passed fail failed accept accepted acceptable reject
    rejected keep scrap defective normal abnormal anomalous conforming nonconforming intact damaged
    """
)
_POSITION = _vocab(
    """
    top bottom left right center centre central middle upper lower corner corners edge edges side sides
    border quadrant end ends near above below beside next tip base rim neck head periphery inside
    outside inner outer front back half area region location lobe
    """
)
# Words that name defects (generic inspection vocabulary; the knowledge base adds its own names).
_DEFECT = _vocab(
    """
    scratch scratches scratched crack cracks cracked hole holes stain stains stained contamination
    contaminated dent dented cut tear torn broken break breakage bent missing fold folded glue poke
    squeeze squeezed deformation deformed damage damaged misplaced misplacement misaligned misalignment
    flip flipped rough oil imprint misprint burn burnt chip chipped fray frayed fraying leak opened swap
    swapped discoloration discolouration spot spots residue particle particles foreign bubble wrinkle
    wrinkled rust corrosion extra short defect anomaly fault flaw
    """
)
# Words of consequence: effects, risks, failure.
_EFFECT = _vocab(
    """
    may might can could will would cause causes causing lead leads result results risk risks fail fails
    failure failed weaken weakens weakened reduce reduces reduced prevent prevents leak leakage leaks
    injure injury hazard unsafe safety function functional performance lifetime shorter customer user
    affect affects impair impairs cannot unable nothing no effect impact spoil spoils contaminate harm
    short circuit overheat overheating break loosen
    """
)
# Words that describe looks: colour, shape, size, texture, light.
_LOOK = _vocab(
    """
    dark bright light pale shiny glossy dull matte thin thick long short small large tiny big round
    irregular jagged straight curved line lines streak patch blotch smear spot spots speck specks
    speckles mark marks shape shaped colour color coloured colored texture looks appears visible edges
    white black brown red blue green yellow gray grey orange pink purple bluish reddish brownish greyish
    transparent smooth grainy fibrous flattened splayed bent frayed cracked gap lump drop blob
    """
)
# Object attributes: counts, colours, materials, shapes, textures, arrangements.
_NUMBER = _vocab(
    """
    one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen
    seventeen eighteen nineteen twenty thirty forty fifty hundred none single pair dozen several many
    few
    """
)
_ATTRIBUTE = _NUMBER | _vocab(
    """
    white black brown red blue green yellow gray grey orange pink purple silver golden gold metal
    metallic plastic glass paper cardboard rubber steel aluminium aluminum copper fabric textile ceramic
    round oval square rectangular triangular triangle circular cylindrical flat hex star lobed curved
    spheres smooth grained woven speckled striped stripes checkered polished bumpy row grid circle
    stacked arranged text letters digits tubes squares only both all each every
    """
)
# Common things an inspector is shown (the caller adds its own product names, e.g. the knowledge base's).
_PRODUCT = _vocab(
    """
    nut nuts bolt bolts screw screws washer gear spring nail rivet pin pins cable wire rope hose tube
    pipe belt chain bottle jar cup bowl can box bag package packaging carton tray lid cap board panel
    plate tile brick stone plank fabric carpet leather wood pill capsule tablet candy cookie cracker
    biscuit pretzel almond walnut peanut cashew hazelnut pistachio apple orange banana button coin bead
    brush comb razor pen spoon fork knife key lock battery chip resistor capacitor diode transistor fuse
    relay led keyboard connector plug socket switch sensor zipper toothbrush soap candle bulb product
    object item component part
    """
)
_STOP = {"a", "an", "the", "it", "is", "of", "and", "or", "in", "on", "at", "to", "its", "with", "as", "by"}


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _content(text: str) -> list[str]:
    return [w for w in words(text) if w not in _STOP]


def name_vocabulary(names: Iterable[str]) -> set[str]:
    """Normalised names ("broken_large", "Large breakage", "metal_nut") for exact option matches."""
    return {" ".join(_content(n.replace("_", " "))) for n in names if n.strip()}


def option_evidence(
    options: Mapping[str, str], defect_names: set[str] | None = None, product_names: set[str] | None = None
) -> dict[str, float]:
    """Per question type, the share of options that look like that type's answers (0..1; {} without options).

    An option may count for several types (a "dark scratch" is a name and a look); the wording decides.
    """
    texts = [t for t in options.values() if t and t.strip()]
    if not texts:
        return {}
    defects, products = defect_names or set(), product_names or set()
    share = dict.fromkeys(QUESTION_TYPES, 0.0)
    heads = [(words(t) or [""])[0] for t in texts]
    if len(texts) <= 3 and all(h in _VERDICT_HEADS for h in heads):
        share[ANOMALY_DETECTION] = 1.0
        return share
    for text in texts:
        raw, ws = words(text), _content(text)
        wset, norm = set(ws), " ".join(ws)
        named = norm in defects
        defect = named or bool(wset & _DEFECT)
        effect, look = len(wset & _EFFECT), len(wset & _LOOK)
        if wset & _POSITION:
            share[DEFECT_LOCALIZATION] += 1
        if named or (defect and len(raw) <= 3 and not effect):
            share[DEFECT_CLASSIFICATION] += 1
        if look and len(raw) >= 2 and look > effect and not named:
            share[DEFECT_DESCRIPTION] += 1
        if effect and effect >= look:
            share[DEFECT_ANALYSIS] += 1
        if (wset & _ATTRIBUTE or len(wset & _PRODUCT) >= 2) and not defect:
            share[OBJECT_ANALYSIS] += 1
        if (norm in products or wset & _PRODUCT) and not defect and len(raw) <= 4:
            share[OBJECT_CLASSIFICATION] += 1
    return {k: v / len(texts) for k, v in share.items()}
