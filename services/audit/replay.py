"""Replay: ask today's models a recorded question again, and say what changed.

How a plant checks a model upgrade on its own history: the recorded request is
sent again with the recorded image (through the Inspector, like any client), and
the answer, the verdict, the plan, the evidence used, the models and the prompt
are compared with the record.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from echo.v1 import common_pb2, inspector_pb2
from services.audit.record import question_type_name, verdict_name, verdict_of

SCORE_TOLERANCE = 0.005  # option probabilities closer than this count as unchanged


@dataclass(frozen=True)
class Change:
    field: str
    recorded: str
    today: str


@dataclass
class Replay:
    record: inspector_pb2.InspectionRecord
    response: inspector_pb2.InspectResponse
    changes: list[Change]


def replay_request(record: inspector_pb2.InspectionRecord, image: bytes) -> inspector_pb2.InspectRequest:
    """The recorded request with its image, under a new id that names the original."""
    req = inspector_pb2.InspectRequest()
    req.CopyFrom(record.request)
    req.image.CopyFrom(common_pb2.Image(data=image))
    req.request_id = f"replay-{uuid.uuid4().hex[:8]}-{record.request_id}"[:128]
    return req


def _answer(letter: str, text: str) -> str:
    return f"{letter}. {text}" if letter else "(none: unparsed reply)"


def compare(record: inspector_pb2.InspectionRecord, resp: inspector_pb2.InspectResponse) -> list[Change]:
    """What differs between a record and today's answer to the same request, field by field."""
    old, new = record.trace, resp.trace
    options = dict(record.request.question.options)
    verdict = verdict_of(new.question_type, options, resp.answer)
    pairs: list[tuple[str, str, str]] = [
        ("answer", _answer(record.answer, record.answer_text), _answer(resp.answer, resp.answer_text)),
        ("verdict", verdict_name(record.verdict) or "-", verdict_name(verdict) or "-"),
        ("question type", question_type_name(old.question_type), question_type_name(new.question_type)),
        ("category", record.category, new.category),
        ("experts", ", ".join(old.experts_used), ", ".join(new.experts_used)),
        ("references", ", ".join(r.id for r in old.references), ", ".join(r.id for r in new.references)),
        ("knowledge entries", ", ".join(old.knowledge_entry_ids), ", ".join(new.knowledge_entry_ids)),
        ("knowledge passages", ", ".join(old.knowledge_passage_ids), ", ".join(new.knowledge_passage_ids)),
    ]
    for stage in sorted(set(old.model_ids) | set(new.model_ids)):
        pairs.append((f"{stage} model", old.model_ids.get(stage, "-"), new.model_ids.get(stage, "-")))
    pairs.append(("prompt sha256", old.prompt_sha256 or "-", new.prompt_sha256 or "-"))
    for letter in sorted(set(old.option_scores) | set(new.option_scores)):
        a, b = old.option_scores.get(letter), new.option_scores.get(letter)
        if a is None or b is None or abs(a - b) > SCORE_TOLERANCE:
            pairs.append((f"score {letter}", "-" if a is None else f"{a:.3f}", "-" if b is None else f"{b:.3f}"))
    pairs.append(("degraded", "; ".join(old.degraded) or "-", "; ".join(d for d in new.degraded) or "-"))
    return [Change(f, a, b) for f, a, b in pairs if a != b]


def replay(client, line_id: str, request_id: str) -> Replay:  # type: ignore[no-untyped-def]
    """Fetch the record and its image over gRPC, inspect again, compare (client: an InspectorClient)."""
    record = client.get_inspection(line_id, request_id).record
    image = client.get_image(line_id, record.image_sha256).data
    resp = client.inspect_request(replay_request(record, image))
    return Replay(record, resp, compare(record, resp))
