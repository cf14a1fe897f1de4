from echo.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnalyzeOptions(_message.Message):
    __slots__ = ("return_heatmap", "return_overlay", "max_boxes", "threshold")
    RETURN_HEATMAP_FIELD_NUMBER: _ClassVar[int]
    RETURN_OVERLAY_FIELD_NUMBER: _ClassVar[int]
    MAX_BOXES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    return_heatmap: bool
    return_overlay: bool
    max_boxes: int
    threshold: float
    def __init__(self, return_heatmap: _Optional[bool] = ..., return_overlay: _Optional[bool] = ..., max_boxes: _Optional[int] = ..., threshold: _Optional[float] = ...) -> None: ...

class AnalyzeRequest(_message.Message):
    __slots__ = ("line_id", "dataset", "category", "image", "options")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    image: _common_pb2.Image
    options: AnalyzeOptions
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., options: _Optional[_Union[AnalyzeOptions, _Mapping]] = ...) -> None: ...

class Calibration(_message.Message):
    __slots__ = ("threshold", "policy", "images", "far_target", "far_in_sample", "note", "review_threshold", "method")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    FAR_TARGET_FIELD_NUMBER: _ClassVar[int]
    FAR_IN_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    threshold: float
    policy: str
    images: int
    far_target: float
    far_in_sample: float
    note: str
    review_threshold: float
    method: str
    def __init__(self, threshold: _Optional[float] = ..., policy: _Optional[str] = ..., images: _Optional[int] = ..., far_target: _Optional[float] = ..., far_in_sample: _Optional[float] = ..., note: _Optional[str] = ..., review_threshold: _Optional[float] = ..., method: _Optional[str] = ...) -> None: ...

class AnalyzeResponse(_message.Message):
    __slots__ = ("score", "threshold", "anomalous", "boxes", "heatmap", "overlay_png", "backbone_id", "compute_ms", "bank_images", "calibration", "summary", "width", "height", "local_score", "global_score", "global_threshold", "fired", "review_threshold", "band")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ANOMALOUS_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_PNG_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_ID_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    BANK_IMAGES_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    LOCAL_SCORE_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_SCORE_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FIRED_FIELD_NUMBER: _ClassVar[int]
    REVIEW_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BAND_FIELD_NUMBER: _ClassVar[int]
    score: float
    threshold: float
    anomalous: bool
    boxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.EvidenceBox]
    heatmap: _common_pb2.HeatMap
    overlay_png: bytes
    backbone_id: str
    compute_ms: float
    bank_images: int
    calibration: Calibration
    summary: str
    width: int
    height: int
    local_score: float
    global_score: float
    global_threshold: float
    fired: str
    review_threshold: float
    band: str
    def __init__(self, score: _Optional[float] = ..., threshold: _Optional[float] = ..., anomalous: _Optional[bool] = ..., boxes: _Optional[_Iterable[_Union[_common_pb2.EvidenceBox, _Mapping]]] = ..., heatmap: _Optional[_Union[_common_pb2.HeatMap, _Mapping]] = ..., overlay_png: _Optional[bytes] = ..., backbone_id: _Optional[str] = ..., compute_ms: _Optional[float] = ..., bank_images: _Optional[int] = ..., calibration: _Optional[_Union[Calibration, _Mapping]] = ..., summary: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., local_score: _Optional[float] = ..., global_score: _Optional[float] = ..., global_threshold: _Optional[float] = ..., fired: _Optional[str] = ..., review_threshold: _Optional[float] = ..., band: _Optional[str] = ...) -> None: ...

class SelfConfigCandidate(_message.Message):
    __slots__ = ("name", "auroc", "auroc_local", "auroc_global", "latency_ms", "status", "image_score", "global_score")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AUROC_FIELD_NUMBER: _ClassVar[int]
    AUROC_LOCAL_FIELD_NUMBER: _ClassVar[int]
    AUROC_GLOBAL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SCORE_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_SCORE_FIELD_NUMBER: _ClassVar[int]
    name: str
    auroc: float
    auroc_local: float
    auroc_global: float
    latency_ms: float
    status: str
    image_score: str
    global_score: str
    def __init__(self, name: _Optional[str] = ..., auroc: _Optional[float] = ..., auroc_local: _Optional[float] = ..., auroc_global: _Optional[float] = ..., latency_ms: _Optional[float] = ..., status: _Optional[str] = ..., image_score: _Optional[str] = ..., global_score: _Optional[str] = ...) -> None: ...

class SelfConfig(_message.Message):
    __slots__ = ("status", "chosen", "image_score", "global_score", "auroc", "latency_ms", "seconds", "needs_more_images", "note", "candidates", "latency_budget_ms")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SCORE_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_SCORE_FIELD_NUMBER: _ClassVar[int]
    AUROC_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_MORE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    status: str
    chosen: str
    image_score: str
    global_score: str
    auroc: float
    latency_ms: float
    seconds: float
    needs_more_images: int
    note: str
    candidates: _containers.RepeatedCompositeFieldContainer[SelfConfigCandidate]
    latency_budget_ms: float
    def __init__(self, status: _Optional[str] = ..., chosen: _Optional[str] = ..., image_score: _Optional[str] = ..., global_score: _Optional[str] = ..., auroc: _Optional[float] = ..., latency_ms: _Optional[float] = ..., seconds: _Optional[float] = ..., needs_more_images: _Optional[int] = ..., note: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[SelfConfigCandidate, _Mapping]]] = ..., latency_budget_ms: _Optional[float] = ...) -> None: ...

class AddBankImagesRequest(_message.Message):
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

class BankInfo(_message.Message):
    __slots__ = ("line_id", "dataset", "category", "images", "memory_patches", "patches_seen", "backbone_id", "generation", "updated_at", "calibration", "self_config", "global_calibration")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PATCHES_FIELD_NUMBER: _ClassVar[int]
    PATCHES_SEEN_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    SELF_CONFIG_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    images: int
    memory_patches: int
    patches_seen: int
    backbone_id: str
    generation: int
    updated_at: float
    calibration: Calibration
    self_config: SelfConfig
    global_calibration: Calibration
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., images: _Optional[int] = ..., memory_patches: _Optional[int] = ..., patches_seen: _Optional[int] = ..., backbone_id: _Optional[str] = ..., generation: _Optional[int] = ..., updated_at: _Optional[float] = ..., calibration: _Optional[_Union[Calibration, _Mapping]] = ..., self_config: _Optional[_Union[SelfConfig, _Mapping]] = ..., global_calibration: _Optional[_Union[Calibration, _Mapping]] = ...) -> None: ...

class AddBankImagesResponse(_message.Message):
    __slots__ = ("added", "existing", "bank")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    BANK_FIELD_NUMBER: _ClassVar[int]
    added: int
    existing: int
    bank: BankInfo
    def __init__(self, added: _Optional[int] = ..., existing: _Optional[int] = ..., bank: _Optional[_Union[BankInfo, _Mapping]] = ...) -> None: ...

class BankStatsRequest(_message.Message):
    __slots__ = ("line_id", "dataset", "category")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ...) -> None: ...

class BankStatsResponse(_message.Message):
    __slots__ = ("banks", "backbone_id")
    BANKS_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_ID_FIELD_NUMBER: _ClassVar[int]
    banks: _containers.RepeatedCompositeFieldContainer[BankInfo]
    backbone_id: str
    def __init__(self, banks: _Optional[_Iterable[_Union[BankInfo, _Mapping]]] = ..., backbone_id: _Optional[str] = ...) -> None: ...

class DeleteBankRequest(_message.Message):
    __slots__ = ("line_id", "dataset", "category", "sha256")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    sha256: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., sha256: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteBankResponse(_message.Message):
    __slots__ = ("deleted_images",)
    DELETED_IMAGES_FIELD_NUMBER: _ClassVar[int]
    deleted_images: int
    def __init__(self, deleted_images: _Optional[int] = ...) -> None: ...

class DefectEntry(_message.Message):
    __slots__ = ("sha256", "defect_type", "box", "inspection_id", "added_at")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DEFECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    INSPECTION_ID_FIELD_NUMBER: _ClassVar[int]
    ADDED_AT_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    defect_type: str
    box: _common_pb2.EvidenceBox
    inspection_id: str
    added_at: float
    def __init__(self, sha256: _Optional[str] = ..., defect_type: _Optional[str] = ..., box: _Optional[_Union[_common_pb2.EvidenceBox, _Mapping]] = ..., inspection_id: _Optional[str] = ..., added_at: _Optional[float] = ...) -> None: ...

class AddDefectRequest(_message.Message):
    __slots__ = ("line_id", "dataset", "category", "image", "defect_type", "box", "inspection_id")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    DEFECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    INSPECTION_ID_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    image: _common_pb2.Image
    defect_type: str
    box: _common_pb2.EvidenceBox
    inspection_id: str
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., defect_type: _Optional[str] = ..., box: _Optional[_Union[_common_pb2.EvidenceBox, _Mapping]] = ..., inspection_id: _Optional[str] = ...) -> None: ...

class AddDefectResponse(_message.Message):
    __slots__ = ("added", "entry", "library_size", "types")
    class TypesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ADDED_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_SIZE_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    added: bool
    entry: DefectEntry
    library_size: int
    types: _containers.ScalarMap[str, int]
    def __init__(self, added: _Optional[bool] = ..., entry: _Optional[_Union[DefectEntry, _Mapping]] = ..., library_size: _Optional[int] = ..., types: _Optional[_Mapping[str, int]] = ...) -> None: ...

class RemoveDefectRequest(_message.Message):
    __slots__ = ("line_id", "dataset", "category", "sha256")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    sha256: str
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class RemoveDefectResponse(_message.Message):
    __slots__ = ("removed", "library_size")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_SIZE_FIELD_NUMBER: _ClassVar[int]
    removed: int
    library_size: int
    def __init__(self, removed: _Optional[int] = ..., library_size: _Optional[int] = ...) -> None: ...

class ClassifyDefectRequest(_message.Message):
    __slots__ = ("line_id", "dataset", "category", "image", "box", "candidate_types", "k", "return_nearest_image")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_TYPES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    RETURN_NEAREST_IMAGE_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    dataset: str
    category: str
    image: _common_pb2.Image
    box: _common_pb2.EvidenceBox
    candidate_types: _containers.RepeatedScalarFieldContainer[str]
    k: int
    return_nearest_image: bool
    def __init__(self, line_id: _Optional[str] = ..., dataset: _Optional[str] = ..., category: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., box: _Optional[_Union[_common_pb2.EvidenceBox, _Mapping]] = ..., candidate_types: _Optional[_Iterable[str]] = ..., k: _Optional[int] = ..., return_nearest_image: _Optional[bool] = ...) -> None: ...

class DefectVote(_message.Message):
    __slots__ = ("defect_type", "weight", "distance")
    DEFECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    defect_type: str
    weight: float
    distance: float
    def __init__(self, defect_type: _Optional[str] = ..., weight: _Optional[float] = ..., distance: _Optional[float] = ...) -> None: ...

class ClassifyDefectResponse(_message.Message):
    __slots__ = ("defect_type", "votes", "library_size", "box", "nearest", "nearest_image")
    DEFECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_SIZE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    NEAREST_FIELD_NUMBER: _ClassVar[int]
    NEAREST_IMAGE_FIELD_NUMBER: _ClassVar[int]
    defect_type: str
    votes: _containers.RepeatedCompositeFieldContainer[DefectVote]
    library_size: int
    box: _common_pb2.EvidenceBox
    nearest: DefectEntry
    nearest_image: bytes
    def __init__(self, defect_type: _Optional[str] = ..., votes: _Optional[_Iterable[_Union[DefectVote, _Mapping]]] = ..., library_size: _Optional[int] = ..., box: _Optional[_Union[_common_pb2.EvidenceBox, _Mapping]] = ..., nearest: _Optional[_Union[DefectEntry, _Mapping]] = ..., nearest_image: _Optional[bytes] = ...) -> None: ...
