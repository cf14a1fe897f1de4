from echo.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DecideRequest(_message.Message):
    __slots__ = ("request_id", "query_image", "reference_images", "knowledge", "question", "reasoning", "answer_format", "return_prompt", "max_reasoning_tokens", "category", "evidence", "defect_example", "defect_example_type")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_IMAGE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FORMAT_FIELD_NUMBER: _ClassVar[int]
    RETURN_PROMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_REASONING_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    DEFECT_EXAMPLE_FIELD_NUMBER: _ClassVar[int]
    DEFECT_EXAMPLE_TYPE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    query_image: _common_pb2.Image
    reference_images: _containers.RepeatedCompositeFieldContainer[_common_pb2.Image]
    knowledge: str
    question: _common_pb2.Question
    reasoning: bool
    answer_format: _common_pb2.AnswerFormat
    return_prompt: bool
    max_reasoning_tokens: int
    category: str
    evidence: _common_pb2.TraceEvidence
    defect_example: _common_pb2.Image
    defect_example_type: str
    def __init__(self, request_id: _Optional[str] = ..., query_image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., reference_images: _Optional[_Iterable[_Union[_common_pb2.Image, _Mapping]]] = ..., knowledge: _Optional[str] = ..., question: _Optional[_Union[_common_pb2.Question, _Mapping]] = ..., reasoning: _Optional[bool] = ..., answer_format: _Optional[_Union[_common_pb2.AnswerFormat, str]] = ..., return_prompt: _Optional[bool] = ..., max_reasoning_tokens: _Optional[int] = ..., category: _Optional[str] = ..., evidence: _Optional[_Union[_common_pb2.TraceEvidence, _Mapping]] = ..., defect_example: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., defect_example_type: _Optional[str] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("answer", "unparsed", "raw_reply", "reasoning", "prompt", "model_id", "compute_ms", "preprocess_ms", "prompt_tokens", "completion_tokens", "scores", "prompt_sha256", "model_kind")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    UNPARSED_FIELD_NUMBER: _ClassVar[int]
    RAW_REPLY_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_SHA256_FIELD_NUMBER: _ClassVar[int]
    MODEL_KIND_FIELD_NUMBER: _ClassVar[int]
    answer: str
    unparsed: bool
    raw_reply: str
    reasoning: str
    prompt: str
    model_id: str
    compute_ms: float
    preprocess_ms: float
    prompt_tokens: int
    completion_tokens: int
    scores: _containers.ScalarMap[str, float]
    prompt_sha256: str
    model_kind: str
    def __init__(self, answer: _Optional[str] = ..., unparsed: _Optional[bool] = ..., raw_reply: _Optional[str] = ..., reasoning: _Optional[str] = ..., prompt: _Optional[str] = ..., model_id: _Optional[str] = ..., compute_ms: _Optional[float] = ..., preprocess_ms: _Optional[float] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., scores: _Optional[_Mapping[str, float]] = ..., prompt_sha256: _Optional[str] = ..., model_kind: _Optional[str] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("request_id", "prompt", "max_tokens")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    prompt: str
    max_tokens: int
    def __init__(self, request_id: _Optional[str] = ..., prompt: _Optional[str] = ..., max_tokens: _Optional[int] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("text", "model_id", "prompt_tokens", "completion_tokens", "compute_ms")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    text: str
    model_id: str
    prompt_tokens: int
    completion_tokens: int
    compute_ms: float
    def __init__(self, text: _Optional[str] = ..., model_id: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., compute_ms: _Optional[float] = ...) -> None: ...
