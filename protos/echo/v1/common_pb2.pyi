from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QuestionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUESTION_TYPE_UNSPECIFIED: _ClassVar[QuestionType]
    ANOMALY_DETECTION: _ClassVar[QuestionType]
    DEFECT_CLASSIFICATION: _ClassVar[QuestionType]
    DEFECT_LOCALIZATION: _ClassVar[QuestionType]
    DEFECT_DESCRIPTION: _ClassVar[QuestionType]
    DEFECT_ANALYSIS: _ClassVar[QuestionType]
    OBJECT_CLASSIFICATION: _ClassVar[QuestionType]
    OBJECT_ANALYSIS: _ClassVar[QuestionType]

class ReferenceMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFERENCE_MODE_UNSPECIFIED: _ClassVar[ReferenceMode]
    ZERO_SHOT: _ClassVar[ReferenceMode]
    ONE_SHOT_RANDOM: _ClassVar[ReferenceMode]
    ONE_SHOT_SIMILAR: _ClassVar[ReferenceMode]
    K_SHOT: _ClassVar[ReferenceMode]

class AnswerFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANSWER_FORMAT_UNSPECIFIED: _ClassVar[AnswerFormat]
    MULTIPLE_CHOICE: _ClassVar[AnswerFormat]
    OPEN_QA: _ClassVar[AnswerFormat]
    TRUE_FALSE: _ClassVar[AnswerFormat]

class KnowledgeMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KNOWLEDGE_MODE_UNSPECIFIED: _ClassVar[KnowledgeMode]
    KNOWLEDGE_NONE: _ClassVar[KnowledgeMode]
    DOMAIN_KNOWLEDGE: _ClassVar[KnowledgeMode]
    CONTEXT_SPECIFIC: _ClassVar[KnowledgeMode]
QUESTION_TYPE_UNSPECIFIED: QuestionType
ANOMALY_DETECTION: QuestionType
DEFECT_CLASSIFICATION: QuestionType
DEFECT_LOCALIZATION: QuestionType
DEFECT_DESCRIPTION: QuestionType
DEFECT_ANALYSIS: QuestionType
OBJECT_CLASSIFICATION: QuestionType
OBJECT_ANALYSIS: QuestionType
REFERENCE_MODE_UNSPECIFIED: ReferenceMode
ZERO_SHOT: ReferenceMode
ONE_SHOT_RANDOM: ReferenceMode
ONE_SHOT_SIMILAR: ReferenceMode
K_SHOT: ReferenceMode
ANSWER_FORMAT_UNSPECIFIED: AnswerFormat
MULTIPLE_CHOICE: AnswerFormat
OPEN_QA: AnswerFormat
TRUE_FALSE: AnswerFormat
KNOWLEDGE_MODE_UNSPECIFIED: KnowledgeMode
KNOWLEDGE_NONE: KnowledgeMode
DOMAIN_KNOWLEDGE: KnowledgeMode
CONTEXT_SPECIFIC: KnowledgeMode

class Image(_message.Message):
    __slots__ = ("data", "uri")
    DATA_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    uri: str
    def __init__(self, data: _Optional[bytes] = ..., uri: _Optional[str] = ...) -> None: ...

class Question(_message.Message):
    __slots__ = ("text", "options", "type")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TEXT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    text: str
    options: _containers.ScalarMap[str, str]
    type: QuestionType
    def __init__(self, text: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ..., type: _Optional[_Union[QuestionType, str]] = ...) -> None: ...

class ExpertSwitches(_message.Message):
    __slots__ = ("reference", "knowledge", "reasoning", "evidence")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    reference: bool
    knowledge: bool
    reasoning: bool
    evidence: bool
    def __init__(self, reference: _Optional[bool] = ..., knowledge: _Optional[bool] = ..., reasoning: _Optional[bool] = ..., evidence: _Optional[bool] = ...) -> None: ...

class RequestSettings(_message.Message):
    __slots__ = ("experts", "reference_mode", "k_shots", "answer_format", "knowledge_mode", "deadline_ms", "return_prompt", "seed", "return_heatmap")
    EXPERTS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_MODE_FIELD_NUMBER: _ClassVar[int]
    K_SHOTS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FORMAT_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_MODE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    RETURN_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    RETURN_HEATMAP_FIELD_NUMBER: _ClassVar[int]
    experts: ExpertSwitches
    reference_mode: ReferenceMode
    k_shots: int
    answer_format: AnswerFormat
    knowledge_mode: KnowledgeMode
    deadline_ms: float
    return_prompt: bool
    seed: int
    return_heatmap: bool
    def __init__(self, experts: _Optional[_Union[ExpertSwitches, _Mapping]] = ..., reference_mode: _Optional[_Union[ReferenceMode, str]] = ..., k_shots: _Optional[int] = ..., answer_format: _Optional[_Union[AnswerFormat, str]] = ..., knowledge_mode: _Optional[_Union[KnowledgeMode, str]] = ..., deadline_ms: _Optional[float] = ..., return_prompt: _Optional[bool] = ..., seed: _Optional[int] = ..., return_heatmap: _Optional[bool] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Reference(_message.Message):
    __slots__ = ("id", "score", "uri", "category", "sha256")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    uri: str
    category: str
    sha256: str
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., uri: _Optional[str] = ..., category: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class StageTiming(_message.Message):
    __slots__ = ("stage", "ms", "compute_ms")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    ms: float
    compute_ms: float
    def __init__(self, stage: _Optional[str] = ..., ms: _Optional[float] = ..., compute_ms: _Optional[float] = ...) -> None: ...

class EvidenceBox(_message.Message):
    __slots__ = ("x0", "y0", "x1", "y1", "score", "region", "area", "above_threshold")
    X0_FIELD_NUMBER: _ClassVar[int]
    Y0_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    ABOVE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    x0: int
    y0: int
    x1: int
    y1: int
    score: float
    region: str
    area: float
    above_threshold: bool
    def __init__(self, x0: _Optional[int] = ..., y0: _Optional[int] = ..., x1: _Optional[int] = ..., y1: _Optional[int] = ..., score: _Optional[float] = ..., region: _Optional[str] = ..., area: _Optional[float] = ..., above_threshold: _Optional[bool] = ...) -> None: ...

class HeatMap(_message.Message):
    __slots__ = ("png", "width", "height", "scale")
    PNG_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    png: bytes
    width: int
    height: int
    scale: float
    def __init__(self, png: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., scale: _Optional[float] = ...) -> None: ...

class TraceEvidence(_message.Message):
    __slots__ = ("score", "threshold", "anomalous", "boxes", "backbone_id", "summary", "sent_as_text", "sent_as_image", "heatmap", "overlay_png", "defect_type", "defect_summary", "review_threshold", "band")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ANOMALOUS_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    SENT_AS_TEXT_FIELD_NUMBER: _ClassVar[int]
    SENT_AS_IMAGE_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_PNG_FIELD_NUMBER: _ClassVar[int]
    DEFECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFECT_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REVIEW_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BAND_FIELD_NUMBER: _ClassVar[int]
    score: float
    threshold: float
    anomalous: bool
    boxes: _containers.RepeatedCompositeFieldContainer[EvidenceBox]
    backbone_id: str
    summary: str
    sent_as_text: bool
    sent_as_image: bool
    heatmap: HeatMap
    overlay_png: bytes
    defect_type: str
    defect_summary: str
    review_threshold: float
    band: str
    def __init__(self, score: _Optional[float] = ..., threshold: _Optional[float] = ..., anomalous: _Optional[bool] = ..., boxes: _Optional[_Iterable[_Union[EvidenceBox, _Mapping]]] = ..., backbone_id: _Optional[str] = ..., summary: _Optional[str] = ..., sent_as_text: _Optional[bool] = ..., sent_as_image: _Optional[bool] = ..., heatmap: _Optional[_Union[HeatMap, _Mapping]] = ..., overlay_png: _Optional[bytes] = ..., defect_type: _Optional[str] = ..., defect_summary: _Optional[str] = ..., review_threshold: _Optional[float] = ..., band: _Optional[str] = ...) -> None: ...

class Trace(_message.Message):
    __slots__ = ("question_type", "type_confidence", "type_from_client", "dataset", "category", "category_confidence", "category_inferred", "experts_used", "references", "knowledge_entry_ids", "knowledge_passage_ids", "timings", "model_ids", "degraded", "prompt", "unparsed", "raw_reply", "reasoning", "reference_mode", "knowledge_mode", "answer_format", "option_scores", "prompt_sha256", "evidence", "verdict_source", "evidence_disagrees", "model_answer", "review", "review_reason")
    class ModelIdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class OptionScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    QUESTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    TYPE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FROM_CLIENT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_INFERRED_FIELD_NUMBER: _ClassVar[int]
    EXPERTS_USED_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_ENTRY_IDS_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_PASSAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    UNPARSED_FIELD_NUMBER: _ClassVar[int]
    RAW_REPLY_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_MODE_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_MODE_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OPTION_SCORES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_SHA256_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_DISAGREES_FIELD_NUMBER: _ClassVar[int]
    MODEL_ANSWER_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    REVIEW_REASON_FIELD_NUMBER: _ClassVar[int]
    question_type: QuestionType
    type_confidence: float
    type_from_client: bool
    dataset: str
    category: str
    category_confidence: float
    category_inferred: bool
    experts_used: _containers.RepeatedScalarFieldContainer[str]
    references: _containers.RepeatedCompositeFieldContainer[Reference]
    knowledge_entry_ids: _containers.RepeatedScalarFieldContainer[str]
    knowledge_passage_ids: _containers.RepeatedScalarFieldContainer[str]
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    model_ids: _containers.ScalarMap[str, str]
    degraded: _containers.RepeatedScalarFieldContainer[str]
    prompt: str
    unparsed: bool
    raw_reply: str
    reasoning: str
    reference_mode: ReferenceMode
    knowledge_mode: KnowledgeMode
    answer_format: AnswerFormat
    option_scores: _containers.ScalarMap[str, float]
    prompt_sha256: str
    evidence: TraceEvidence
    verdict_source: str
    evidence_disagrees: bool
    model_answer: str
    review: str
    review_reason: str
    def __init__(self, question_type: _Optional[_Union[QuestionType, str]] = ..., type_confidence: _Optional[float] = ..., type_from_client: _Optional[bool] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., category_confidence: _Optional[float] = ..., category_inferred: _Optional[bool] = ..., experts_used: _Optional[_Iterable[str]] = ..., references: _Optional[_Iterable[_Union[Reference, _Mapping]]] = ..., knowledge_entry_ids: _Optional[_Iterable[str]] = ..., knowledge_passage_ids: _Optional[_Iterable[str]] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ..., model_ids: _Optional[_Mapping[str, str]] = ..., degraded: _Optional[_Iterable[str]] = ..., prompt: _Optional[str] = ..., unparsed: _Optional[bool] = ..., raw_reply: _Optional[str] = ..., reasoning: _Optional[str] = ..., reference_mode: _Optional[_Union[ReferenceMode, str]] = ..., knowledge_mode: _Optional[_Union[KnowledgeMode, str]] = ..., answer_format: _Optional[_Union[AnswerFormat, str]] = ..., option_scores: _Optional[_Mapping[str, float]] = ..., prompt_sha256: _Optional[str] = ..., evidence: _Optional[_Union[TraceEvidence, _Mapping]] = ..., verdict_source: _Optional[str] = ..., evidence_disagrees: _Optional[bool] = ..., model_answer: _Optional[str] = ..., review: _Optional[str] = ..., review_reason: _Optional[str] = ...) -> None: ...
