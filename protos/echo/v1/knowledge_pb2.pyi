from echo.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DefectKnowledge(_message.Message):
    __slots__ = ("name", "signature", "location", "look_alikes", "tolerance", "cause", "effect", "display_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    LOOK_ALIKES_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    signature: str
    location: str
    look_alikes: str
    tolerance: str
    cause: str
    effect: str
    display_name: str
    def __init__(self, name: _Optional[str] = ..., signature: _Optional[str] = ..., location: _Optional[str] = ..., look_alikes: _Optional[str] = ..., tolerance: _Optional[str] = ..., cause: _Optional[str] = ..., effect: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class KnowledgeEntry(_message.Message):
    __slots__ = ("dataset", "category", "normal", "defects", "version", "id", "display_name")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    NORMAL_FIELD_NUMBER: _ClassVar[int]
    DEFECTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    category: str
    normal: str
    defects: _containers.RepeatedCompositeFieldContainer[DefectKnowledge]
    version: int
    id: str
    display_name: str
    def __init__(self, dataset: _Optional[str] = ..., category: _Optional[str] = ..., normal: _Optional[str] = ..., defects: _Optional[_Iterable[_Union[DefectKnowledge, _Mapping]]] = ..., version: _Optional[int] = ..., id: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class Passage(_message.Message):
    __slots__ = ("id", "text", "score")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    score: float
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class GetContextRequest(_message.Message):
    __slots__ = ("dataset", "category", "question", "mode", "token_budget", "refine")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_BUDGET_FIELD_NUMBER: _ClassVar[int]
    REFINE_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    category: str
    question: _common_pb2.Question
    mode: _common_pb2.KnowledgeMode
    token_budget: int
    refine: bool
    def __init__(self, dataset: _Optional[str] = ..., category: _Optional[str] = ..., question: _Optional[_Union[_common_pb2.Question, _Mapping]] = ..., mode: _Optional[_Union[_common_pb2.KnowledgeMode, str]] = ..., token_budget: _Optional[int] = ..., refine: _Optional[bool] = ...) -> None: ...

class GetContextResponse(_message.Message):
    __slots__ = ("text", "entry_ids", "passages", "version", "compute_ms", "model_id", "refined")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ENTRY_IDS_FIELD_NUMBER: _ClassVar[int]
    PASSAGES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    REFINED_FIELD_NUMBER: _ClassVar[int]
    text: str
    entry_ids: _containers.RepeatedScalarFieldContainer[str]
    passages: _containers.RepeatedCompositeFieldContainer[Passage]
    version: int
    compute_ms: float
    model_id: str
    refined: str
    def __init__(self, text: _Optional[str] = ..., entry_ids: _Optional[_Iterable[str]] = ..., passages: _Optional[_Iterable[_Union[Passage, _Mapping]]] = ..., version: _Optional[int] = ..., compute_ms: _Optional[float] = ..., model_id: _Optional[str] = ..., refined: _Optional[str] = ...) -> None: ...

class PutEntryRequest(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: KnowledgeEntry
    def __init__(self, entry: _Optional[_Union[KnowledgeEntry, _Mapping]] = ...) -> None: ...

class PutEntryResponse(_message.Message):
    __slots__ = ("id", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ListEntriesRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class ListEntriesResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[KnowledgeEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[KnowledgeEntry, _Mapping]]] = ...) -> None: ...
