from echo.v1 import common_pb2 as _common_pb2
from echo.v1 import evidence_pb2 as _evidence_pb2
from echo.v1 import knowledge_pb2 as _knowledge_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_GOOD: _ClassVar[Verdict]
    VERDICT_DEFECT: _ClassVar[Verdict]
    VERDICT_ANSWERED: _ClassVar[Verdict]
    VERDICT_UNPARSED: _ClassVar[Verdict]

class ReviewState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_STATE_UNSPECIFIED: _ClassVar[ReviewState]
    REVIEW_PENDING: _ClassVar[ReviewState]
    REVIEW_CONFIRMED: _ClassVar[ReviewState]
VERDICT_UNSPECIFIED: Verdict
VERDICT_GOOD: Verdict
VERDICT_DEFECT: Verdict
VERDICT_ANSWERED: Verdict
VERDICT_UNPARSED: Verdict
REVIEW_STATE_UNSPECIFIED: ReviewState
REVIEW_PENDING: ReviewState
REVIEW_CONFIRMED: ReviewState

class InspectRequest(_message.Message):
    __slots__ = ("request_id", "line_id", "image", "question", "dataset", "category", "settings", "references")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    line_id: str
    image: _common_pb2.Image
    question: _common_pb2.Question
    dataset: str
    category: str
    settings: _common_pb2.RequestSettings
    references: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    def __init__(self, request_id: _Optional[str] = ..., line_id: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., question: _Optional[_Union[_common_pb2.Question, _Mapping]] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., settings: _Optional[_Union[_common_pb2.RequestSettings, _Mapping]] = ..., references: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ...) -> None: ...

class InspectResponse(_message.Message):
    __slots__ = ("request_id", "answer", "answer_text", "trace")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    ANSWER_TEXT_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    answer: str
    answer_text: str
    trace: _common_pb2.Trace
    def __init__(self, request_id: _Optional[str] = ..., answer: _Optional[str] = ..., answer_text: _Optional[str] = ..., trace: _Optional[_Union[_common_pb2.Trace, _Mapping]] = ...) -> None: ...

class AddNormalImagesRequest(_message.Message):
    __slots__ = ("line_id", "dataset", "category", "images")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., images: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ...) -> None: ...

class AddNormalImagesResponse(_message.Message):
    __slots__ = ("ids", "added", "existing", "evidence_bank_images", "evidence_threshold")
    IDS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_BANK_IMAGES_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    added: int
    existing: int
    evidence_bank_images: int
    evidence_threshold: float
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., added: _Optional[int] = ..., existing: _Optional[int] = ..., evidence_bank_images: _Optional[int] = ..., evidence_threshold: _Optional[float] = ...) -> None: ...

class MemoryItem(_message.Message):
    __slots__ = ("id", "uri", "sha256", "line_id", "dataset", "category", "label")
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    id: str
    uri: str
    sha256: str
    line_id: str
    dataset: str
    category: str
    label: str
    def __init__(self, id: _Optional[str] = ..., uri: _Optional[str] = ..., sha256: _Optional[str] = ..., line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., label: _Optional[str] = ...) -> None: ...

class ListNormalImagesRequest(_message.Message):
    __slots__ = ("line_id", "dataset", "category", "limit", "page_token")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    limit: int
    page_token: str
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListNormalImagesResponse(_message.Message):
    __slots__ = ("items", "total", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[MemoryItem]
    total: int
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[MemoryItem, _Mapping]]] = ..., total: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteNormalImagesRequest(_message.Message):
    __slots__ = ("line_id", "dataset", "category", "ids")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteNormalImagesResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class Product(_message.Message):
    __slots__ = ("dataset", "category", "normal_images", "has_knowledge", "knowledge", "ready", "readiness", "evidence_bank_images", "evidence_threshold", "evidence_features")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    NORMAL_IMAGES_FIELD_NUMBER: _ClassVar[int]
    HAS_KNOWLEDGE_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    READINESS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_BANK_IMAGES_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    category: str
    normal_images: int
    has_knowledge: bool
    knowledge: _knowledge_pb2.KnowledgeEntry
    ready: bool
    readiness: str
    evidence_bank_images: int
    evidence_threshold: float
    evidence_features: str
    def __init__(self, dataset: _Optional[str] = ..., category: _Optional[str] = ..., normal_images: _Optional[int] = ..., has_knowledge: _Optional[bool] = ..., knowledge: _Optional[_Union[_knowledge_pb2.KnowledgeEntry, _Mapping]] = ..., ready: _Optional[bool] = ..., readiness: _Optional[str] = ..., evidence_bank_images: _Optional[int] = ..., evidence_threshold: _Optional[float] = ..., evidence_features: _Optional[str] = ...) -> None: ...

class ListProductsRequest(_message.Message):
    __slots__ = ("line_id", "dataset", "category")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ...) -> None: ...

class ListProductsResponse(_message.Message):
    __slots__ = ("products",)
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ...) -> None: ...

class RecordedEvidence(_message.Message):
    __slots__ = ("score", "threshold", "anomalous", "boxes", "heatmap_sha256", "overlay_sha256", "model_id")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ANOMALOUS_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_SHA256_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_SHA256_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    score: float
    threshold: float
    anomalous: bool
    boxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.EvidenceBox]
    heatmap_sha256: str
    overlay_sha256: str
    model_id: str
    def __init__(self, score: _Optional[float] = ..., threshold: _Optional[float] = ..., anomalous: _Optional[bool] = ..., boxes: _Optional[_Iterable[_Union[_common_pb2.EvidenceBox, _Mapping]]] = ..., heatmap_sha256: _Optional[str] = ..., overlay_sha256: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class InspectionRecord(_message.Message):
    __slots__ = ("request_id", "time_unix_ms", "line_id", "dataset", "category", "image_sha256", "request", "answer", "answer_text", "verdict", "trace", "knowledge_passages", "knowledge_text", "evidence", "gateway")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    ANSWER_TEXT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_PASSAGES_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_TEXT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    time_unix_ms: int
    line_id: str
    dataset: str
    category: str
    image_sha256: str
    request: InspectRequest
    answer: str
    answer_text: str
    verdict: Verdict
    trace: _common_pb2.Trace
    knowledge_passages: _containers.RepeatedCompositeFieldContainer[_knowledge_pb2.Passage]
    knowledge_text: str
    evidence: RecordedEvidence
    gateway: str
    def __init__(self, request_id: _Optional[str] = ..., time_unix_ms: _Optional[int] = ..., line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., image_sha256: _Optional[str] = ..., request: _Optional[_Union[InspectRequest, _Mapping]] = ..., answer: _Optional[str] = ..., answer_text: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., trace: _Optional[_Union[_common_pb2.Trace, _Mapping]] = ..., knowledge_passages: _Optional[_Iterable[_Union[_knowledge_pb2.Passage, _Mapping]]] = ..., knowledge_text: _Optional[str] = ..., evidence: _Optional[_Union[RecordedEvidence, _Mapping]] = ..., gateway: _Optional[str] = ...) -> None: ...

class ListInspectionsRequest(_message.Message):
    __slots__ = ("line_id", "dataset", "category", "verdict", "since_unix_ms", "until_unix_ms", "limit", "page_token", "oldest_first")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OLDEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    verdict: Verdict
    since_unix_ms: int
    until_unix_ms: int
    limit: int
    page_token: str
    oldest_first: bool
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., since_unix_ms: _Optional[int] = ..., until_unix_ms: _Optional[int] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., oldest_first: _Optional[bool] = ...) -> None: ...

class ListInspectionsResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[InspectionRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[InspectionRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetInspectionRequest(_message.Message):
    __slots__ = ("line_id", "request_id")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    request_id: str
    def __init__(self, line_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetInspectionResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: InspectionRecord
    def __init__(self, record: _Optional[_Union[InspectionRecord, _Mapping]] = ...) -> None: ...

class GetImageRequest(_message.Message):
    __slots__ = ("line_id", "sha256")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    sha256: str
    def __init__(self, line_id: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class GetImageResponse(_message.Message):
    __slots__ = ("data", "content_type", "sha256")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    content_type: str
    sha256: str
    def __init__(self, data: _Optional[bytes] = ..., content_type: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class ListLinesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LineProduct(_message.Message):
    __slots__ = ("dataset", "category", "normal_images")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    NORMAL_IMAGES_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    category: str
    normal_images: int
    def __init__(self, dataset: _Optional[str] = ..., category: _Optional[str] = ..., normal_images: _Optional[int] = ...) -> None: ...

class Line(_message.Message):
    __slots__ = ("line_id", "normal_images", "products")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    NORMAL_IMAGES_FIELD_NUMBER: _ClassVar[int]
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    normal_images: int
    products: _containers.RepeatedCompositeFieldContainer[LineProduct]
    def __init__(self, line_id: _Optional[str] = ..., normal_images: _Optional[int] = ..., products: _Optional[_Iterable[_Union[LineProduct, _Mapping]]] = ...) -> None: ...

class ListLinesResponse(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[Line]
    def __init__(self, lines: _Optional[_Iterable[_Union[Line, _Mapping]]] = ...) -> None: ...

class PutKnowledgeRequest(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: _knowledge_pb2.KnowledgeEntry
    def __init__(self, entry: _Optional[_Union[_knowledge_pb2.KnowledgeEntry, _Mapping]] = ...) -> None: ...

class PutKnowledgeResponse(_message.Message):
    __slots__ = ("id", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetKnowledgeRequest(_message.Message):
    __slots__ = ("dataset", "category")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    category: str
    def __init__(self, dataset: _Optional[str] = ..., category: _Optional[str] = ...) -> None: ...

class GetKnowledgeResponse(_message.Message):
    __slots__ = ("entry", "degraded")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    entry: _knowledge_pb2.KnowledgeEntry
    degraded: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, entry: _Optional[_Union[_knowledge_pb2.KnowledgeEntry, _Mapping]] = ..., degraded: _Optional[_Iterable[str]] = ...) -> None: ...

class ReviewConfirmation(_message.Message):
    __slots__ = ("line_id", "inspection_id", "verdict", "defect_type", "box", "note", "forced", "by", "time_unix_ms", "dataset", "category", "image_sha256", "outcome")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    INSPECTION_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DEFECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    inspection_id: str
    verdict: Verdict
    defect_type: str
    box: _common_pb2.EvidenceBox
    note: str
    forced: bool
    by: str
    time_unix_ms: int
    dataset: str
    category: str
    image_sha256: str
    outcome: str
    def __init__(self, line_id: _Optional[str] = ..., inspection_id: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., defect_type: _Optional[str] = ..., box: _Optional[_Union[_common_pb2.EvidenceBox, _Mapping]] = ..., note: _Optional[str] = ..., forced: _Optional[bool] = ..., by: _Optional[str] = ..., time_unix_ms: _Optional[int] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., image_sha256: _Optional[str] = ..., outcome: _Optional[str] = ...) -> None: ...

class ReviewItem(_message.Message):
    __slots__ = ("record", "state", "confirmations")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATIONS_FIELD_NUMBER: _ClassVar[int]
    record: InspectionRecord
    state: ReviewState
    confirmations: _containers.RepeatedCompositeFieldContainer[ReviewConfirmation]
    def __init__(self, record: _Optional[_Union[InspectionRecord, _Mapping]] = ..., state: _Optional[_Union[ReviewState, str]] = ..., confirmations: _Optional[_Iterable[_Union[ReviewConfirmation, _Mapping]]] = ...) -> None: ...

class ListReviewsRequest(_message.Message):
    __slots__ = ("line_id", "state", "dataset", "category", "inspection_id", "limit", "page_token")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    INSPECTION_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    state: ReviewState
    dataset: str
    category: str
    inspection_id: str
    limit: int
    page_token: str
    def __init__(self, line_id: _Optional[str] = ..., state: _Optional[_Union[ReviewState, str]] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., inspection_id: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReviewsResponse(_message.Message):
    __slots__ = ("items", "next_page_token", "pending")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ReviewItem]
    next_page_token: str
    pending: int
    def __init__(self, items: _Optional[_Iterable[_Union[ReviewItem, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., pending: _Optional[int] = ...) -> None: ...

class ConfirmReviewRequest(_message.Message):
    __slots__ = ("line_id", "inspection_id", "verdict", "defect_type", "box", "force", "note")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    INSPECTION_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DEFECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    inspection_id: str
    verdict: Verdict
    defect_type: str
    box: _common_pb2.EvidenceBox
    force: bool
    note: str
    def __init__(self, line_id: _Optional[str] = ..., inspection_id: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., defect_type: _Optional[str] = ..., box: _Optional[_Union[_common_pb2.EvidenceBox, _Mapping]] = ..., force: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class ConfirmReviewResponse(_message.Message):
    __slots__ = ("confirmation", "changed", "message", "evidence_bank_images", "evidence_threshold", "defect_library_size")
    CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_BANK_IMAGES_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DEFECT_LIBRARY_SIZE_FIELD_NUMBER: _ClassVar[int]
    confirmation: ReviewConfirmation
    changed: bool
    message: str
    evidence_bank_images: int
    evidence_threshold: float
    defect_library_size: int
    def __init__(self, confirmation: _Optional[_Union[ReviewConfirmation, _Mapping]] = ..., changed: _Optional[bool] = ..., message: _Optional[str] = ..., evidence_bank_images: _Optional[int] = ..., evidence_threshold: _Optional[float] = ..., defect_library_size: _Optional[int] = ...) -> None: ...
