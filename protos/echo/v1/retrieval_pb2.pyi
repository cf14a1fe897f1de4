from echo.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MemoryPoint(_message.Message):
    __slots__ = ("id", "vector", "uri", "sha256", "label", "line_id", "dataset", "category")
    ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    id: str
    vector: _containers.RepeatedScalarFieldContainer[float]
    uri: str
    sha256: str
    label: str
    line_id: str
    dataset: str
    category: str
    def __init__(self, id: _Optional[str] = ..., vector: _Optional[_Iterable[float]] = ..., uri: _Optional[str] = ..., sha256: _Optional[str] = ..., label: _Optional[str] = ..., line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[MemoryPoint]
    def __init__(self, points: _Optional[_Iterable[_Union[MemoryPoint, _Mapping]]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("ids", "added", "existing")
    IDS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    added: int
    existing: int
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., added: _Optional[int] = ..., existing: _Optional[int] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("vector", "line_id", "dataset", "category", "k", "mode", "seed", "exclude_sha256")
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_SHA256_FIELD_NUMBER: _ClassVar[int]
    vector: _containers.RepeatedScalarFieldContainer[float]
    line_id: str
    dataset: str
    category: str
    k: int
    mode: _common_pb2.ReferenceMode
    seed: int
    exclude_sha256: str
    def __init__(self, vector: _Optional[_Iterable[float]] = ..., line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., k: _Optional[int] = ..., mode: _Optional[_Union[_common_pb2.ReferenceMode, str]] = ..., seed: _Optional[int] = ..., exclude_sha256: _Optional[str] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "compute_ms")
    HITS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[_common_pb2.Reference]
    compute_ms: float
    def __init__(self, hits: _Optional[_Iterable[_Union[_common_pb2.Reference, _Mapping]]] = ..., compute_ms: _Optional[float] = ...) -> None: ...

class DeleteRequest(_message.Message):
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

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("line_id", "dataset", "category", "list_limit", "page_token", "sha256")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    LIST_LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    list_limit: int
    page_token: str
    sha256: str
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., list_limit: _Optional[int] = ..., page_token: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class CategoryCount(_message.Message):
    __slots__ = ("line_id", "dataset", "category", "count")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    count: int
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("total", "counts", "dim", "engine", "points", "next_page_token")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    total: int
    counts: _containers.RepeatedCompositeFieldContainer[CategoryCount]
    dim: int
    engine: str
    points: _containers.RepeatedCompositeFieldContainer[MemoryPoint]
    next_page_token: str
    def __init__(self, total: _Optional[int] = ..., counts: _Optional[_Iterable[_Union[CategoryCount, _Mapping]]] = ..., dim: _Optional[int] = ..., engine: _Optional[str] = ..., points: _Optional[_Iterable[_Union[MemoryPoint, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class InferCategoryRequest(_message.Message):
    __slots__ = ("vector", "line_id", "dataset", "category_text_vectors", "k")
    class CategoryTextVectorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.Vector
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ...) -> None: ...
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_TEXT_VECTORS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    vector: _containers.RepeatedScalarFieldContainer[float]
    line_id: str
    dataset: str
    category_text_vectors: _containers.MessageMap[str, _common_pb2.Vector]
    k: int
    def __init__(self, vector: _Optional[_Iterable[float]] = ..., line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category_text_vectors: _Optional[_Mapping[str, _common_pb2.Vector]] = ..., k: _Optional[int] = ...) -> None: ...

class InferCategoryResponse(_message.Message):
    __slots__ = ("category", "dataset", "confidence", "scores", "compute_ms")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    category: str
    dataset: str
    confidence: float
    scores: _containers.ScalarMap[str, float]
    compute_ms: float
    def __init__(self, category: _Optional[str] = ..., dataset: _Optional[str] = ..., confidence: _Optional[float] = ..., scores: _Optional[_Mapping[str, float]] = ..., compute_ms: _Optional[float] = ...) -> None: ...
