"""`decision.backend: evidence`: answer from the visual evidence expert alone, no MLLM (lines without a GPU).

Three question types have an answer in the evidence itself:
- Anomaly Detection: the calibrated verdict picks the Yes or No option;
- Defect Localization: the option whose position words best match the most anomalous box's region
  (MMAD's 3x3 words: "top left", "center", "bottom right", ...);
- Defect Classification: the option naming the type of the nearest operator-confirmed defects of the product
  (its defect library, kNN on the top box's patch features); an empty library is FAILED_PRECONDITION naming
  what to add.
Every other type needs a model that reads the image, and is refused (FAILED_PRECONDITION) naming these three.
"""

from __future__ import annotations

import re
import time

from services.common.answers import parse_yes_no
from services.common.errors import FailedPrecondition
from services.common.names import defect_type_key
from services.decision.baselines import no_text_model
from services.decision.core import (
    DecisionInput,
    DecisionResult,
    EvidenceInput,
    TextResult,
    health_input,
    validate_input,
)
from services.mmad.types import ANOMALY_DETECTION, DEFECT_CLASSIFICATION, DEFECT_LOCALIZATION

ANSWERS = (ANOMALY_DETECTION, DEFECT_LOCALIZATION, DEFECT_CLASSIFICATION)
_SYNONYMS = {"upper": "top", "lower": "bottom", "middle": "center", "centre": "center", "central": "center"}
_POSITION_WORDS = {"top", "bottom", "left", "right", "center"}


def position_words(text: str) -> set[str]:
    """The position words of a text, synonyms folded ("upper left corner" -> {top, left})."""
    words = (_SYNONYMS.get(w, w) for w in re.findall(r"[a-z]+", text.lower()))
    return {w for w in words if w in _POSITION_WORDS}


def best_region_option(region: str, options: dict[str, str]) -> str:
    """The letter whose position words best match `region` (Jaccard of the word sets; the first on a tie)."""
    want = position_words(region)

    def match(letter: str) -> float:
        have = position_words(options[letter])
        return len(want & have) / len(want | have) if want | have else 0.0

    best = max(sorted(options), key=match)
    return best if match(best) > 0 else ""


class EvidenceDecider:
    """Answers Anomaly Detection and Defect Localization from the evidence the gateway sends with the question."""

    backend_name = "evidence"
    model_id = "evidence-verdict"

    async def decide(self, inp: DecisionInput, *, timeout_s: float | None = None) -> DecisionResult:
        t0 = time.perf_counter()
        validate_input(inp)
        if inp.question_type not in ANSWERS:
            asked = f"a {inp.question_type} question" if inp.question_type else "a question of unknown type"
            raise FailedPrecondition(
                f"decision backend 'evidence' answers {', '.join(ANSWERS)} only (from the visual evidence, no "
                f"MLLM); this is {asked}: configure an MLLM backend (transformers, openai or vllm) for it"
            )
        ev = inp.evidence
        if ev is None:
            raise FailedPrecondition(
                "decision backend 'evidence' got no visual evidence with this question: the product needs normal "
                "images in its evidence bank (`echo-iad product add`, AddNormalImages or `echo-iad memory build`) "
                "and the evidence expert must be on for this type (gateway.expert_map, settings.experts.evidence)",
                field="evidence",
            )
        if inp.question_type == ANOMALY_DETECTION:
            letter, raw = self._detect(ev, inp.options)
        elif inp.question_type == DEFECT_CLASSIFICATION:
            letter, raw = self._classify(ev, inp.options)
        else:
            letter, raw = self._locate(ev, inp.options)
        return DecisionResult(
            answer=letter,
            unparsed=not letter,
            raw_reply=raw,
            model_id=self.model_id,
            compute_ms=(time.perf_counter() - t0) * 1000,
            model_kind="evidence",
        )

    @staticmethod
    def _detect(ev: EvidenceInput, options: dict[str, str]) -> tuple[str, str]:
        why = f"score {ev.score:.4g} {'>' if ev.anomalous else '<='} threshold {ev.threshold:.4g}"
        letter = next((k for k in sorted(options) if parse_yes_no(options[k]) is ev.anomalous), "")
        if not letter:
            raise FailedPrecondition(
                f"decision backend 'evidence': no option says {'Yes' if ev.anomalous else 'No'} to pick from "
                f"the verdict ({why})",
                field="question.options",
            )
        return letter, f"{'anomalous' if ev.anomalous else 'normal'}: {why}"

    @staticmethod
    def _classify(ev: EvidenceInput, options: dict[str, str]) -> tuple[str, str]:
        if not ev.defect_type:
            why = ev.defect_summary or (
                "the gateway did not ask the defect library (gateway.classify_defects is off, or an older gateway)"
            )
            raise FailedPrecondition(
                f"decision backend 'evidence' answers Defect Classification from the product's confirmed defects, "
                f"and has none for this question: {why}",
                field="evidence.defect_type",
            )
        letter = next((k for k in sorted(options) if defect_type_key(options[k]) == ev.defect_type), "")
        return letter, ev.defect_summary or f"nearest confirmed defects: {ev.defect_type}"

    @staticmethod
    def _locate(ev: EvidenceInput, options: dict[str, str]) -> tuple[str, str]:
        if not ev.regions:
            return "", "no anomalous region found"
        letter = best_region_option(ev.regions[0], options)
        return letter, f"most anomalous region: {ev.regions[0]}"

    async def complete_text(self, prompt: str, **_: object) -> TextResult:
        return await no_text_model(self.backend_name)

    async def check_health(self) -> None:
        """A tiny real decision: a normal verdict answers MMAD's anomaly question with No."""
        inp = health_input()
        inp.question_type = ANOMALY_DETECTION
        inp.evidence = EvidenceInput(anomalous=False, score=0.5, threshold=1.0, regions=["center"])
        result = await self.decide(inp)
        if inp.options.get(result.answer) != "No.":
            raise RuntimeError(f"evidence backend answered {result.answer!r} to a normal verdict")

    async def close(self) -> None:
        return None
