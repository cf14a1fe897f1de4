"""Context-specific knowledge (CSK): the parts of an entry that *this* question needs.

An entry is split into passages: each sentence of the normal description
(`MVTec/bottle#normal.0`) and each field of each defect type
(`MVTec/bottle#broken_large.signature`). For a question:

1. The defect types named or implied by the options (and the question) are
   selected: option words are matched against each defect's name, display name
   and a small synonym table (crack ~ broken, stain ~ contamination), fuzzily
   (cracked ~ crack); an option no word of which matches falls back to MiniLM
   similarity with the defect names (short options) or with the defect passages
   the question type cares about (descriptive options).
2. Required passages: the normal description when the question is about
   normality (Anomaly Detection, the object questions, or "normal" in the
   text), and the signature of every selected defect.
3. Then, ranked by MiniLM similarity to question + options and added while
   the text stays within the token budget: the fields the question type needs
   (Classification: signature, look-alikes; Localization: location;
   Description: signature; Analysis: effect, cause) of the selected defects
   (of all defects when none is selected); for Description and Analysis, those
   fields of the other defects too (matching a description is uncertain);
   last, other fields of the selected defects that are close to the question
   (similarity >= FILL_FLOOR).

The budget is a hard cap. A required passage that does not fit whole is cut to
its first sentence, then to what fits, before it is dropped.
"""

from __future__ import annotations

import difflib
import functools
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from services.knowledge.embedder import TextEmbedder, TokenCounter
from services.knowledge.entries import DEFECT_FIELDS, FIELD_LABELS, Entry
from services.mmad.types import (
    ANOMALY_DETECTION,
    DEFECT_ANALYSIS,
    DEFECT_CLASSIFICATION,
    DEFECT_DESCRIPTION,
    DEFECT_LOCALIZATION,
    OBJECT_ANALYSIS,
    OBJECT_CLASSIFICATION,
)

# The defect fields each question type needs most; they are ranked before the others.
PREFERRED_FIELDS: dict[str, tuple[str, ...]] = {
    ANOMALY_DETECTION: ("signature",),
    DEFECT_CLASSIFICATION: ("signature", "look_alikes"),
    DEFECT_LOCALIZATION: ("location",),
    DEFECT_DESCRIPTION: ("signature",),
    DEFECT_ANALYSIS: ("effect", "cause"),
    OBJECT_CLASSIFICATION: (),
    OBJECT_ANALYSIS: (),
    "": ("signature",),
}
NORMALITY_TYPES = frozenset({ANOMALY_DETECTION, OBJECT_CLASSIFICATION, OBJECT_ANALYSIS})
_NORMALITY_RE = re.compile(
    r"\b(normal(ly|ity)?|defect[- ]free|flawless|intact|any (defects?|anomal\w*|flaws?)|anomal\w*|good condition)\b",
    re.IGNORECASE,
)

# Words that say nothing about which defect an option means.
_STOP_WORDS = (
    "a an the of on in at to is are was there this that these with and or for from its it be has have no not none "
    "yes defect defects defective type kind object product item part sample image appears appear visible some any "
    "which what where seems looks"
)
_STOP = frozenset(_STOP_WORDS.split())
# Defect vocabulary that inspectors (and MMAD's options) use interchangeably.
_SYNONYM_GROUPS: tuple[frozenset[str], ...] = tuple(
    frozenset(g.split())
    for g in (
        "crack cracked cracks broken breakage break fracture fractured split chip chipped",
        "scratch scratched scratches scrape scraped scuff abrasion",
        "hole holes puncture punctured perforation pinhole poke poked",
        "contamination contaminated stain stained dirt dirty foreign particle debris residue smudge speck",
        "color colour colored coloured discoloration discolouration discolored tint hue",
        "missing absent lacking removed",
        "misplaced misplacement misaligned misalignment shifted offset displaced flip flipped",
        "bent bend deformed deformation dent dented squeeze squeezed crushed",
        "cut slit tear torn gash",
        "glue adhesive",
        "liquid oil fluid wet spill",
        "print imprint printing label marking",
        "thread fiber fibre hair strand",
        "rough roughness uneven coarse",
        "fold folded crease wrinkle",
        "swap swapped wrong mixed",
    )
)
_SYNONYM_OF: dict[str, frozenset[str]] = {w: g for g in _SYNONYM_GROUPS for w in g}
DESCRIPTIVE_WORDS = 4  # an option with more content words describes rather than names
LEXICAL_THRESHOLD = 0.3  # an option names a defect when its best lexical score reaches this
NAME_SIM_THRESHOLD = 0.5  # MiniLM fallback, short option vs defect name
TEXT_SIM_THRESHOLD = 0.45  # MiniLM fallback, option vs the defect passages its question type is about
TEXT_SIM_MARGIN = 0.05  # ... a runner-up this close to the best is taken too
FILL_FLOOR = 0.6  # a field the question type does not need is added only when this similar to the question


@dataclass(frozen=True)
class Passage:
    """A piece of an entry; `defect` is None for the normal description."""

    id: str
    text: str
    defect: str | None
    field: str  # "normal" or one of DEFECT_FIELDS
    score: float = 0.0


@dataclass(frozen=True)
class Extraction:
    """What one request gets: the text and exactly the passages it was built from (for the trace)."""

    text: str
    passages: tuple[Passage, ...]
    defects: tuple[str, ...]  # the defect types selected by the options / question
    question_type: str
    tokens: int


def _tier(p: Passage, question_type: str, selected: list[str]) -> int | None:
    """Fill order of a passage that is not required (lower first), or None to leave it out.

    0: a field the question type needs, of a selected defect (of every defect when none is selected);
    1: for descriptive options (Description, Analysis): that field of the other defects too, since
       matching a description to a defect is the uncertain step;
    2: any other field of a selected defect that is close to the question (score >= FILL_FLOOR).
    """
    if p.defect is None or question_type in (OBJECT_CLASSIFICATION, OBJECT_ANALYSIS):
        return None
    prefer = PREFERRED_FIELDS.get(question_type) or ("signature",)
    if p.field in prefer:
        if not selected or p.defect in selected:
            return 0
        return 1 if question_type in (DEFECT_DESCRIPTION, DEFECT_ANALYSIS) else None
    if p.defect in selected and p.score >= FILL_FLOOR:
        return 2
    return None


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", text.strip()) if s.strip()]


def passages_of(entry: Entry) -> list[Passage]:
    """Every passage of an entry, in reading order."""
    out = [Passage(f"{entry.id}#normal.{i}", s, None, "normal") for i, s in enumerate(split_sentences(entry.normal))]
    for d in entry.defects:
        out.extend(Passage(f"{entry.id}#{d.name}.{f}", d.field(f), d.name, f) for f in DEFECT_FIELDS)
    return out


def _sentence(text: str) -> str:
    return text if text[-1:] in ".!?…" else text + "."


def header(entry: Entry, defect: str | None) -> str:
    """The label that opens the line of the normal description (defect None) or of one defect."""
    if defect is None:
        return f"{entry.display_name}, normal appearance:"
    d = entry.defect(defect)
    display = d.display_name if d is not None else defect
    return f"{display} ({defect.replace('_', ' ')}):"


def piece(p: Passage) -> str:
    """How a passage is written inside its line."""
    if p.defect is None or p.field == "signature":
        return _sentence(p.text)
    return f"{FIELD_LABELS[p.field]}: {_sentence(p.text)}"


def render(entry: Entry, passages: list[Passage] | tuple[Passage, ...]) -> str:
    """The knowledge text given to the decision model: normal first, then each defect, fields in schema order.

    Lines and pieces are joined by whitespace only, so a WordPiece token count of
    the text is the sum of the counts of its headers and pieces (used by the budget).
    """
    lines = []
    normal = [p for p in passages if p.defect is None]
    if normal:
        lines.append(" ".join([header(entry, None), *(piece(p) for p in normal)]))
    for d in entry.defects:
        fields = {p.field: p for p in passages if p.defect == d.name}
        if fields:
            pieces = [piece(fields[f]) for f in DEFECT_FIELDS if f in fields]
            lines.append(" ".join([header(entry, d.name), *pieces]))
    return "\n".join(lines)


def order(entry: Entry, passages: list[Passage]) -> list[Passage]:
    """Passages in the order render() writes them."""
    rank = {p.id: i for i, p in enumerate(passages_of(entry))}
    return sorted(passages, key=lambda p: rank.get(p.id, len(rank)))


def guess_question_type(question: str) -> str:
    """A keyword guess for requests that leave the type unset (the gateway classifies properly)."""
    q = question.lower()
    if re.search(r"\bwhere\b|\blocat|\bposition", q):
        return DEFECT_LOCALIZATION
    if re.search(r"\b(type|kind|category) of (the )?(defect|anomaly|flaw)|\bwhich defect|\bclassif", q):
        return DEFECT_CLASSIFICATION
    if re.search(r"\bappearance\b|\blook like\b|\bdescri", q):
        return DEFECT_DESCRIPTION
    if re.search(r"\beffect|\bcause|\bimpact|\bconsequence|\baffect", q):
        return DEFECT_ANALYSIS
    if _NORMALITY_RE.search(q) or re.search(r"\bdefects?\b.*\?", q):
        return ANOMALY_DETECTION
    return ""


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP and len(w) > 1]


@functools.lru_cache(maxsize=65536)
def word_match(a: str, b: str) -> float:
    """1 for the same word, 0.9 for a spelling variant (cracked ~ crack), 0.7 for a synonym, else 0."""
    if a == b:
        return 1.0
    prefix = len(_common_prefix(a, b))
    if (prefix >= 5 and prefix >= 0.7 * min(len(a), len(b))) or (
        min(len(a), len(b)) >= 4 and difflib.SequenceMatcher(None, a, b).ratio() >= 0.85
    ):
        return 0.9
    ga, gb = _SYNONYM_OF.get(a), _SYNONYM_OF.get(b)
    if ga is not None and ga is gb:
        return 0.7
    return 0.0


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def name_variants(entry: Entry) -> dict[str, list[list[str]]]:
    """For each defect: its name's words and its display name's words (stop words dropped)."""
    out = {}
    for d in entry.defects:
        variants = [content_words(d.name.replace("_", " ")), content_words(d.display_name)]
        out[d.name] = [v for v in variants if v] or [[d.name]]
    return out


def lexical_score(option_words: list[str], variants: list[list[str]]) -> float:
    """How well an option names a defect: half how much of the option the name explains, half how much
    of the name the option covers (best name variant). "Large breakage" scores 1 for broken_large and
    0.5 for broken_small; "Crack" scores 0.525 for broken_large (a synonym).

    A descriptive option (more than DESCRIPTIVE_WORDS content words) names a defect when it contains
    the name's words anywhere; synonyms do not count there ("dirt" in a sentence about an effect is
    not a contamination)."""
    if not option_words:
        return 0.0
    descriptive = len(option_words) > DESCRIPTIVE_WORDS

    def match(a: str, b: str) -> float:
        m = word_match(a, b)
        return 0.0 if descriptive and m < 0.9 else m

    best = 0.0
    for words in variants:
        name_cov = sum(max(match(o, w) for o in option_words) for w in words) / len(words)
        opt_cov = sum(max(match(o, w) for w in words) for o in option_words) / len(option_words)
        if descriptive:
            opt_cov = max(opt_cov, name_cov)
        best = max(best, 0.5 * name_cov + 0.5 * opt_cov)
    return best


_AnswerKey = tuple[Entry, str, tuple[str, ...], str, int]  # entry, question, options, question type, budget


@dataclass
class _Prepared:
    passages: list[Passage]
    vectors: np.ndarray  # one unit row per passage
    name_vectors: np.ndarray  # one unit row per defect (display name)
    variants: dict[str, list[list[str]]]


class Extractor:
    """Builds DK and CSK texts. Passage embeddings are computed once per entry version and cached, and so is each
    CSK answer, per exact request.

    A line asks the same few questions of every part it inspects, so the answer cache spares MiniLM (the
    stage's whole cost) on all but the first; its key holds the entry itself (content and version), so an
    updated entry (PutEntry, a Redis hot update, an edited file) misses, and the first answer built from it
    drops those built from the entry it replaced.

    Args:
        embedder: the sentence embedder (MiniLM); needed for CSK only.
        counter: token counter for the budget.
        cache_entries: how many entry versions keep their passage embeddings.
        cache_answers: how many CSK answers are kept (least recently used first out); 0: none.
    """

    def __init__(
        self, embedder: TextEmbedder, counter: TokenCounter, cache_entries: int = 512, cache_answers: int = 4096
    ) -> None:
        self.embedder = embedder
        self.counter = counter
        self.cache_entries = cache_entries
        self.cache_answers = cache_answers
        self._cache: OrderedDict[tuple[str, int, int], _Prepared] = OrderedDict()
        self._answers: OrderedDict[_AnswerKey, Extraction] = OrderedDict()
        self._answered: dict[str, Entry] = {}  # entry id -> the entry its cached answers were built from
        self._lock = threading.Lock()
        self._count = functools.lru_cache(maxsize=65536)(counter.count)  # pieces repeat across requests
        self.answer_hits = 0  # answers served from the cache (tests and benchmarks read it)

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def prepare(self, entry: Entry) -> _Prepared:
        key = (entry.id, entry.version, hash(entry))  # the hash guards against equal versions from two stores
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        passages = passages_of(entry)
        vectors = self.embedder.encode([p.text for p in passages] + [d.display_name for d in entry.defects])
        prepared = _Prepared(
            passages=passages,
            vectors=vectors[: len(passages)],
            name_vectors=vectors[len(passages) :],
            variants=name_variants(entry),
        )
        with self._lock:
            self._cache[key] = prepared
            while len(self._cache) > self.cache_entries:
                self._cache.popitem(last=False)
        return prepared

    def full(self, entry: Entry) -> Extraction:
        """DK: the whole entry, untrimmed."""
        passages = passages_of(entry)
        text = render(entry, passages)
        return Extraction(text, tuple(passages), (), "", self._count(text))

    def match_by_name(
        self, entry: Entry, prepared: _Prepared, question: str, options: list[str]
    ) -> tuple[set[str], list[str]]:
        """Defects the options (or the question) name, and the options that name none (for match_by_meaning)."""
        names = [d.name for d in entry.defects]
        chosen: set[str] = set()
        unmatched: list[str] = []
        for i, text in enumerate([*options, question]):
            words = content_words(text)
            if not words:
                continue  # "Yes.", "No defect": no defect named
            scores = np.array([lexical_score(words, prepared.variants[n]) for n in names])
            best = float(scores.max())
            if best >= LEXICAL_THRESHOLD:
                chosen.update(n for n, s in zip(names, scores, strict=True) if s >= best - 1e-6)
            elif i < len(options):
                unmatched.append(text)
        return chosen, unmatched

    def match_by_meaning(
        self, entry: Entry, prepared: _Prepared, options: list[str], vectors: np.ndarray, question_type: str
    ) -> set[str]:
        """Defects implied by options that name none: MiniLM similarity to the defect names (short options),
        else to the defect fields the question type is about ("The part can break" ~ crack.effect)."""
        names = [d.name for d in entry.defects]
        chosen: set[str] = set()
        fields = PREFERRED_FIELDS.get(question_type) or ("signature",)
        rows = [(j, names.index(p.defect)) for j, p in enumerate(prepared.passages) if p.defect and p.field in fields]
        for text, vec in zip(options, vectors, strict=True):
            name_sims = prepared.name_vectors @ vec
            k = int(np.argmax(name_sims))
            if len(content_words(text)) <= DESCRIPTIVE_WORDS and name_sims[k] >= NAME_SIM_THRESHOLD:
                chosen.add(names[k])
                continue
            sims = np.full(len(names), -1.0)
            for j, d in rows:
                sims[d] = max(sims[d], float(prepared.vectors[j] @ vec))
            top = [int(k) for k in np.argsort(-sims)[:2]]
            if sims[top[0]] >= TEXT_SIM_THRESHOLD:  # the best, and a runner-up too close to call
                chosen.update(names[k] for k in top if sims[k] >= sims[top[0]] - TEXT_SIM_MARGIN)
        return chosen

    def extract(
        self,
        entry: Entry,
        question: str,
        options: dict[str, str] | list[str],
        question_type: str = "",
        token_budget: int = 256,
    ) -> Extraction:
        """CSK for one question (the cached answer when this very request was answered from this very entry)."""
        opts = [o.strip() for o in (options.values() if isinstance(options, dict) else options) if o.strip()]
        qtype = question_type or guess_question_type(question)
        key = (entry, question, tuple(opts), qtype, token_budget)
        with self._lock:
            hit = self._answers.get(key)
            if hit is not None:
                self._answers.move_to_end(key)
                self.answer_hits += 1
                return hit
        answer = self._extract(entry, question, opts, qtype, token_budget)
        if self.cache_answers > 0:
            with self._lock:
                prev = self._answered.get(entry.id)
                if prev is not None and prev != entry:
                    if prev.version > entry.version:  # built from an entry already replaced: not kept
                        return answer
                    for stale in [k for k in self._answers if k[0].id == entry.id and k[0] != entry]:
                        del self._answers[stale]
                self._answered[entry.id] = entry
                self._answers[key] = answer
                while len(self._answers) > self.cache_answers:
                    self._answers.popitem(last=False)
        return answer

    def _extract(self, entry: Entry, question: str, opts: list[str], qtype: str, token_budget: int) -> Extraction:
        """CSK for one question; see the module docstring for the rules."""
        prepared = self.prepare(entry)
        query = question.strip() + ("\nOptions: " + "; ".join(opts) if opts else "")
        chosen, unmatched = self.match_by_name(entry, prepared, question, opts)
        if qtype == DEFECT_LOCALIZATION:
            unmatched = []  # options that are positions imply no defect type
        vecs = self.embedder.encode([query, *unmatched])  # one forward for everything this request embeds
        qvec = vecs[0]
        chosen |= self.match_by_meaning(entry, prepared, unmatched, vecs[1:], qtype)
        selected = [d.name for d in entry.defects if d.name in chosen]
        sims = prepared.vectors @ qvec
        scored = [replace(p, score=float(s)) for p, s in zip(prepared.passages, sims, strict=True)]

        required: list[Passage] = []
        if qtype in NORMALITY_TYPES or _NORMALITY_RE.search(question):
            required += [p for p in scored if p.defect is None]
        required += [p for p in scored if p.defect in selected and p.field == "signature"]
        pool = sorted(
            ((tier, p) for p in scored if p not in required and (tier := _tier(p, qtype, selected)) is not None),
            key=lambda tp: (tp[0], -tp[1].score, tp[1].id),
        )

        chosen: list[Passage] = []
        used = 0
        cap = self._fair_share(entry, required, token_budget)
        for p in required:
            fitted, cost = self._fit(entry, chosen, p, min(cap, token_budget - used), shorten=True)
            if fitted is not None:
                chosen.append(fitted)
                used += cost
        for _, p in pool:
            fitted, cost = self._fit(entry, chosen, p, token_budget - used, shorten=False)
            if fitted is not None:
                chosen.append(fitted)
                used += cost
        chosen = order(entry, chosen)
        text = render(entry, chosen)
        return Extraction(text, tuple(chosen), tuple(selected), qtype, self._count(text))

    def _fair_share(self, entry: Entry, required: list[Passage], budget: int) -> int:
        """The most tokens one required passage may take so that every one of them gets a share.

        When all fit, that is the whole budget; otherwise the long ones are cut to a common
        cap (water filling), so a tight budget shortens every option's defect instead of
        dropping the last ones.
        """
        costs = []
        seen: set[str | None] = set()
        for p in required:
            costs.append(self._count(piece(p)) + (0 if p.defect in seen else self._count(header(entry, p.defect))))
            seen.add(p.defect)
        if sum(costs) <= budget:
            return budget
        remaining, left = budget, len(costs)
        for c in sorted(costs):
            share = remaining // left
            if c > share:
                return share
            remaining -= c
            left -= 1
        return budget

    def _fit(
        self, entry: Entry, chosen: list[Passage], p: Passage, room: int, shorten: bool
    ) -> tuple[Passage | None, int]:
        """p (shortened if allowed) and the tokens it adds, if it fits in `room` tokens next to `chosen`."""
        opens_line = all(c.defect != p.defect for c in chosen)
        overhead = self._count(header(entry, p.defect)) if opens_line else 0
        cost = overhead + self._count(piece(p))
        if cost <= room:
            return p, cost
        if not shorten:
            return None, 0
        first = split_sentences(p.text)[0]
        candidates = [replace(p, text=first)] if first != p.text else []
        label = self._count(piece(replace(p, text="x"))) - 1  # the field label and the full stop
        for n in (room - overhead - label, room - overhead - label - 2):
            if n >= 4:
                candidates.append(replace(p, text=self.counter.truncate(first, n)))
        for c in candidates:
            cost = overhead + self._count(piece(c))
            if cost <= room:
                return c, cost
        return None, 0
