"""What the synthetic products are: categories, their defect types, texts, and the 3x3 localisation regions.

Plain data shared by the renderer (what to draw), the question writer (what to ask and answer) and
domain_knowledge.json (what an expert knows), so the three can never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DATASET = "Synthetic"
SIZE = 256

REGIONS: tuple[tuple[str, str, str], ...] = (
    ("top left", "top", "top right"),
    ("left", "center", "right"),
    ("bottom left", "bottom", "bottom right"),
)
REGION_NAMES: tuple[str, ...] = tuple(r for row in REGIONS for r in row)


def region_of(x: float, y: float, size: int = SIZE) -> str:
    """Name of the 3x3 image cell holding the point (x right, y down)."""
    col = min(2, max(0, int(3 * x / size)))
    row = min(2, max(0, int(3 * y / size)))
    return REGIONS[row][col]


def region_text(region: str) -> str:
    """The Defect Localization option for a region, e.g. "At the top left of the image."."""
    return f"At the {region} of the image."


DEFECT_LABELS: dict[str, str] = {
    "scratch": "Scratch",
    "crack": "Crack",
    "hole": "Hole",
    "contamination": "Contamination",
    "color_defect": "Color defect",
    "missing_part": "Missing part",
    "misplacement": "Misplacement",
}
# Plausible wrong answers for Defect Classification beyond a category's own defect types.
EXTRA_DEFECT_LABELS: tuple[str, ...] = ("Dent", "Deformation", "Fold", "Burr", "Bent lead", "Cut")


@dataclass(frozen=True)
class ObjectQuestion:
    """A category-level Object Analysis question; `answer_fact` names the scene fact holding the answer."""

    raw_type: str  # MMAD's raw spelling: "Object Structure" or "Object Details"
    text: str
    answers: dict[str, str]  # fact value -> option text
    distractors: tuple[str, ...]
    answer_fact: str


@dataclass(frozen=True)
class CategorySpec:
    name: str
    product: str  # Object Classification option, e.g. "A machined metal washer."
    defects: tuple[str, ...]
    good: str  # domain knowledge for the normal appearance
    knowledge: dict[str, str]  # defect -> description
    effects: dict[str, str]  # defect -> Defect Analysis answer
    object_questions: tuple[ObjectQuestion, ...]


CATEGORIES: dict[str, CategorySpec] = {
    "round_part": CategorySpec(
        name="round_part",
        product="A machined metal washer.",
        defects=("scratch", "crack", "hole", "contamination", "color_defect"),
        good=(
            "A flat, round, bright metal washer seen from the top on a dark background: a central round opening "
            "and four small mounting holes evenly spaced around it. The surface shows fine concentric turning "
            "marks and a bevelled rim; brightness varies smoothly with the lighting direction."
        ),
        knowledge={
            "scratch": "A thin straight or slightly curved line, brighter or darker than the surrounding metal, "
            "cutting across the turning marks.",
            "crack": "A dark, jagged, branching line where the metal has split; it often starts at an edge.",
            "hole": "An extra round opening through the washer, not one of the four mounting holes, where the "
            "dark background shows through.",
            "contamination": "An irregular stain or deposit (oil, dirt, residue) lying on the metal surface.",
            "color_defect": "A patch whose colour differs from the bright grey metal (bluish heat tint, brownish "
            "oxidation) without a change in shape.",
        },
        effects={
            "scratch": "It mars the seating surface, so the washer may seal poorly and corrode along the groove.",
            "crack": "It weakens the part, which can split completely under the clamping load.",
            "hole": "It removes material, weakening the washer and letting fluid or dirt pass through it.",
            "contamination": "It leaves residue between the mating surfaces, spoiling the fit and inviting corrosion.",
            "color_defect": "It points to overheating or oxidation during processing, so hardness and corrosion "
            "resistance may be off.",
        },
        object_questions=(
            ObjectQuestion(
                "Object Structure",
                "How many small mounting holes are arranged around the central opening of the part?",
                {"4": "Four."},
                ("Two.", "Three.", "Five.", "Six."),
                "mounting_holes",
            ),
            ObjectQuestion(
                "Object Details",
                "What does the surface of the part look like?",
                {"turned": "Bright metal with fine concentric turning marks."},
                (
                    "Painted red plastic with a matte finish.",
                    "Rough cast iron with a dark oxide layer.",
                    "Transparent glass with a smooth finish.",
                    "Woven fibres in a regular grid.",
                ),
                "finish",
            ),
        ),
    ),
    "woven_fabric": CategorySpec(
        name="woven_fabric",
        product="A woven fabric.",
        defects=("hole", "contamination", "color_defect", "scratch"),
        good=(
            "A beige textile in a plain weave filling the whole image: threads cross over and under one another "
            "in a regular checkerboard of small bumps. Slight rotation, lighting gradients and fibre noise are normal."
        ),
        knowledge={
            "hole": "An opening where threads are torn or missing, with frayed edges and the dark backing visible.",
            "contamination": "An irregular stain or deposit on the threads that does not follow the weave pattern.",
            "color_defect": "A patch dyed a different colour (bluish, reddish, greenish) while the weave is intact.",
            "scratch": "A thin line of abraded or pulled fibres, lighter than the fabric, crossing the weave.",
        },
        effects={
            "hole": "The fabric is torn through, so it can unravel further and the piece must be rejected.",
            "contamination": "The stain spoils the look of the textile and may not wash out.",
            "color_defect": "The uneven dyeing makes the piece visibly mismatched with the rest of the roll.",
            "scratch": "The abraded fibres weaken the surface and will pill or snag in use.",
        },
        object_questions=(
            ObjectQuestion(
                "Object Structure",
                "How are the threads of the fabric interlaced?",
                {"plain": "Each thread passes alternately over and under one crossing thread (plain weave)."},
                (
                    "The threads form diagonal ribs (twill weave).",
                    "The threads are knitted in interlocking loops.",
                    "Long threads float over several crossing threads (satin weave).",
                    "There are no threads; it is a pressed felt.",
                ),
                "weave",
            ),
            ObjectQuestion(
                "Object Details",
                "What colour is the fabric?",
                {"beige": "Beige."},
                ("Navy blue.", "Bright red.", "Black.", "Green."),
                "color",
            ),
        ),
    ),
    "printed_board": CategorySpec(
        name="printed_board",
        product="A printed circuit board.",
        defects=("missing_part", "misplacement", "scratch", "contamination"),
        good=(
            "A green printed circuit board with two black integrated-circuit chips with silver pins, four tan "
            "resistors and two round blue capacitors, each seated on its solder pads, lighter green traces and "
            "white silkscreen outlines, and four mounting holes at the corners."
        ),
        knowledge={
            "missing_part": "A component is absent from its place, leaving its bare solder pads exposed.",
            "misplacement": "A component sits shifted off its pads or silkscreen outline instead of centred on it.",
            "scratch": "A thin bright line on the solder mask where the coating is scraped through to the layer below.",
            "contamination": "An irregular stain, flux residue or deposit on the board surface.",
        },
        effects={
            "missing_part": "The circuit is incomplete, so the board will not work.",
            "misplacement": "The pins do not meet their pads, causing open or short circuits.",
            "scratch": "A scraped trace can break the connection or short to a neighbour.",
            "contamination": "Residue can cause leakage currents and corrosion between conductors.",
        },
        object_questions=(
            ObjectQuestion(
                "Object Structure",
                "How many black integrated-circuit chips are mounted on the board?",
                {"1": "One.", "2": "Two.", "3": "Three."},
                ("One.", "Two.", "Three.", "Four.", "None."),
                "n_chips",
            ),
            ObjectQuestion(
                "Object Details",
                "What colour is the solder mask of the board?",
                {"green": "Green."},
                ("Blue.", "Red.", "Yellow.", "White."),
                "mask_color",
            ),
        ),
    ),
    "screw": CategorySpec(
        name="screw",
        product="A metal screw.",
        defects=("scratch", "crack", "missing_part", "color_defect"),
        good=(
            "A steel screw seen from the side on a light background: a rounded pan head, a threaded shank with "
            "regular slanted ridges and a pointed tip. Orientation, position and lighting vary slightly."
        ),
        knowledge={
            "scratch": "A thin bright or dark line along the head or shank, cutting across the thread ridges.",
            "crack": "A dark jagged split in the metal, usually in the head.",
            "missing_part": "A piece of the screw is gone: the tip is broken off or a chunk of the head is chipped.",
            "color_defect": "A patch whose colour differs from the grey steel (orange-brown rust, bluish tint).",
        },
        effects={
            "scratch": "It damages the plating, so the screw may rust along the scratch.",
            "crack": "The screw can snap when it is tightened.",
            "missing_part": "The screw cannot be driven or seated properly and must be scrapped.",
            "color_defect": "It indicates corrosion or heat damage that weakens the screw.",
        },
        object_questions=(
            ObjectQuestion(
                "Object Structure",
                "What kind of head does the screw have?",
                {"pan": "A rounded pan head."},
                ("A flat countersunk head.", "A hexagonal head.", "It has no head.", "A square head."),
                "head",
            ),
            ObjectQuestion(
                "Object Details",
                "What is the screw made of?",
                {"steel": "Grey steel."},
                ("Transparent plastic.", "Wood.", "Red rubber.", "Glass."),
                "material",
            ),
        ),
    ),
}

PRODUCT_DISTRACTORS: tuple[str, ...] = (
    "A glass bottle.",
    "A capsule.",
    "A hazelnut.",
    "A leather sheet.",
    "A zipper.",
    "A toothbrush.",
    "A metal nut.",
    "A pill.",
)


def domain_knowledge(categories: Sequence[str] | None = None) -> dict[str, dict[str, dict[str, str]]]:
    """domain_knowledge.json for the synthetic categories, in MMAD's `" <Name>\\n Description: ..."` form."""
    out: dict[str, dict[str, str]] = {}
    for name in categories or CATEGORIES:
        spec = CATEGORIES[name]
        entry = {"good": f" <Normal>\n Description: {spec.good}"}
        for d in spec.defects:
            entry[d] = f" <{DEFECT_LABELS[d]}>\n Description: {spec.knowledge[d]}"
        out[name] = entry
    return {DATASET: out}
