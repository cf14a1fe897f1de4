from echo.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InspectRequest(_message.Message):
    __slots__ = ("request_id", "line_id", "image", "question", "dataset", "category", "settings")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    line_id: str
    image: _common_pb2.Image
    question: _common_pb2.Question
    dataset: str
    category: str
    settings: _common_pb2.RequestSettings
    def __init__(self, request_id: _Optional[str] = ..., line_id: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., question: _Optional[_Union[_common_pb2.Question, _Mapping]] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., settings: _Optional[_Union[_common_pb2.RequestSettings, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("ids", "added", "existing")
    IDS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    added: int
    existing: int
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., added: _Optional[int] = ..., existing: _Optional[int] = ...) -> None: ...

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
