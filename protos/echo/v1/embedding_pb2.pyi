from echo.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedImagesRequest(_message.Message):
    __slots__ = ("images", "return_patch_tokens")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    RETURN_PATCH_TOKENS_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    return_patch_tokens: bool
    def __init__(self, images: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ..., return_patch_tokens: _Optional[bool] = ...) -> None: ...

class PatchTokens(_message.Message):
    __slots__ = ("num_tokens", "dim", "values")
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    num_tokens: int
    dim: int
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, num_tokens: _Optional[int] = ..., dim: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedImagesResponse(_message.Message):
    __slots__ = ("embeddings", "dim", "model_id", "compute_ms", "patch_tokens", "preprocess_ms")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    PATCH_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    dim: int
    model_id: str
    compute_ms: float
    patch_tokens: _containers.RepeatedCompositeFieldContainer[PatchTokens]
    preprocess_ms: float
    def __init__(self, embeddings: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ..., dim: _Optional[int] = ..., model_id: _Optional[str] = ..., compute_ms: _Optional[float] = ..., patch_tokens: _Optional[_Iterable[_Union[PatchTokens, _Mapping]]] = ..., preprocess_ms: _Optional[float] = ...) -> None: ...

class EmbedTextsRequest(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ...) -> None: ...

class EmbedTextsResponse(_message.Message):
    __slots__ = ("embeddings", "dim", "model_id", "compute_ms")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Vector]
    dim: int
    model_id: str
    compute_ms: float
    def __init__(self, embeddings: _Optional[_Iterable[_Union[_common_pb2.Vector, _Mapping]]] = ..., dim: _Optional[int] = ..., model_id: _Optional[str] = ..., compute_ms: _Optional[float] = ...) -> None: ...

class EmbeddingInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EmbeddingInfoResponse(_message.Message):
    __slots__ = ("model_id", "dim", "texts", "patch_tokens")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    PATCH_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dim: int
    texts: bool
    patch_tokens: bool
    def __init__(self, model_id: _Optional[str] = ..., dim: _Optional[int] = ..., texts: _Optional[bool] = ..., patch_tokens: _Optional[bool] = ...) -> None: ...
