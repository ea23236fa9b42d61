from services.pb.radiogenomics.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_FORMAT_UNSPECIFIED: _ClassVar[ImageFormat]
    IMAGE_NRRD: _ClassVar[ImageFormat]
    IMAGE_NIFTI: _ClassVar[ImageFormat]
    IMAGE_DICOM_SERIES: _ClassVar[ImageFormat]

class MaskFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MASK_FORMAT_UNSPECIFIED: _ClassVar[MaskFormat]
    MASK_NRRD: _ClassVar[MaskFormat]
    MASK_NIFTI: _ClassVar[MaskFormat]
    MASK_DICOM_SEG: _ClassVar[MaskFormat]
    MASK_RTSTRUCT: _ClassVar[MaskFormat]
IMAGE_FORMAT_UNSPECIFIED: ImageFormat
IMAGE_NRRD: ImageFormat
IMAGE_NIFTI: ImageFormat
IMAGE_DICOM_SERIES: ImageFormat
MASK_FORMAT_UNSPECIFIED: MaskFormat
MASK_NRRD: MaskFormat
MASK_NIFTI: MaskFormat
MASK_DICOM_SEG: MaskFormat
MASK_RTSTRUCT: MaskFormat

class ExtractionOptions(_message.Message):
    __slots__ = ("params_yaml", "label", "roi_name", "segment", "case_id")
    PARAMS_YAML_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ROI_NAME_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    params_yaml: str
    label: int
    roi_name: str
    segment: str
    case_id: str
    def __init__(self, params_yaml: _Optional[str] = ..., label: _Optional[int] = ..., roi_name: _Optional[str] = ..., segment: _Optional[str] = ..., case_id: _Optional[str] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("image_format", "mask_format", "options")
    IMAGE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    MASK_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    image_format: ImageFormat
    mask_format: MaskFormat
    options: ExtractionOptions
    def __init__(self, image_format: _Optional[_Union[ImageFormat, str]] = ..., mask_format: _Optional[_Union[MaskFormat, str]] = ..., options: _Optional[_Union[ExtractionOptions, _Mapping]] = ...) -> None: ...

class ExtractChunk(_message.Message):
    __slots__ = ("header", "image_chunk", "mask_chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    IMAGE_CHUNK_FIELD_NUMBER: _ClassVar[int]
    MASK_CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    image_chunk: bytes
    mask_chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., image_chunk: _Optional[bytes] = ..., mask_chunk: _Optional[bytes] = ...) -> None: ...

class ExtractPathRequest(_message.Message):
    __slots__ = ("image_path", "mask_path", "image_format", "mask_format", "options")
    IMAGE_PATH_FIELD_NUMBER: _ClassVar[int]
    MASK_PATH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    MASK_FORMAT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    image_path: str
    mask_path: str
    image_format: ImageFormat
    mask_format: MaskFormat
    options: ExtractionOptions
    def __init__(self, image_path: _Optional[str] = ..., mask_path: _Optional[str] = ..., image_format: _Optional[_Union[ImageFormat, str]] = ..., mask_format: _Optional[_Union[MaskFormat, str]] = ..., options: _Optional[_Union[ExtractionOptions, _Mapping]] = ...) -> None: ...

class ExtractPacsRequest(_message.Message):
    __slots__ = ("study_uid", "image_series_uid", "mask_series_uid", "options", "store_report")
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SERIES_UID_FIELD_NUMBER: _ClassVar[int]
    MASK_SERIES_UID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    STORE_REPORT_FIELD_NUMBER: _ClassVar[int]
    study_uid: str
    image_series_uid: str
    mask_series_uid: str
    options: ExtractionOptions
    store_report: bool
    def __init__(self, study_uid: _Optional[str] = ..., image_series_uid: _Optional[str] = ..., mask_series_uid: _Optional[str] = ..., options: _Optional[_Union[ExtractionOptions, _Mapping]] = ..., store_report: _Optional[bool] = ...) -> None: ...

class PacsReport(_message.Message):
    __slots__ = ("study_uid", "series_uid", "sop_instance_uid", "omitted_features")
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_UID_FIELD_NUMBER: _ClassVar[int]
    SOP_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    OMITTED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    omitted_features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, study_uid: _Optional[str] = ..., series_uid: _Optional[str] = ..., sop_instance_uid: _Optional[str] = ..., omitted_features: _Optional[_Iterable[str]] = ...) -> None: ...

class ExtractionProvenance(_message.Message):
    __slots__ = ("pyradiomics_version", "params_hash", "image_hash", "mask_hash", "label", "voxel_count", "image_size", "image_spacing", "extraction_seconds")
    PYRADIOMICS_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_HASH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HASH_FIELD_NUMBER: _ClassVar[int]
    MASK_HASH_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VOXEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SPACING_FIELD_NUMBER: _ClassVar[int]
    EXTRACTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    pyradiomics_version: str
    params_hash: str
    image_hash: str
    mask_hash: str
    label: int
    voxel_count: int
    image_size: _containers.RepeatedScalarFieldContainer[int]
    image_spacing: _containers.RepeatedScalarFieldContainer[float]
    extraction_seconds: float
    def __init__(self, pyradiomics_version: _Optional[str] = ..., params_hash: _Optional[str] = ..., image_hash: _Optional[str] = ..., mask_hash: _Optional[str] = ..., label: _Optional[int] = ..., voxel_count: _Optional[int] = ..., image_size: _Optional[_Iterable[int]] = ..., image_spacing: _Optional[_Iterable[float]] = ..., extraction_seconds: _Optional[float] = ...) -> None: ...

class ExtractResponse(_message.Message):
    __slots__ = ("case_id", "features", "provenance", "timing", "request_id", "mask_series_uid", "report")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MASK_SERIES_UID_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    features: _containers.ScalarMap[str, float]
    provenance: ExtractionProvenance
    timing: _common_pb2.Timing
    request_id: str
    mask_series_uid: str
    report: PacsReport
    def __init__(self, case_id: _Optional[str] = ..., features: _Optional[_Mapping[str, float]] = ..., provenance: _Optional[_Union[ExtractionProvenance, _Mapping]] = ..., timing: _Optional[_Union[_common_pb2.Timing, _Mapping]] = ..., request_id: _Optional[str] = ..., mask_series_uid: _Optional[str] = ..., report: _Optional[_Union[PacsReport, _Mapping]] = ...) -> None: ...

class GetExtractorInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExtractorInfo(_message.Message):
    __slots__ = ("pyradiomics_version", "default_features", "max_voxels", "max_upload_bytes", "path_access", "pacs_access")
    PYRADIOMICS_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FEATURES_FIELD_NUMBER: _ClassVar[int]
    MAX_VOXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    PATH_ACCESS_FIELD_NUMBER: _ClassVar[int]
    PACS_ACCESS_FIELD_NUMBER: _ClassVar[int]
    pyradiomics_version: str
    default_features: _containers.RepeatedScalarFieldContainer[str]
    max_voxels: int
    max_upload_bytes: int
    path_access: bool
    pacs_access: bool
    def __init__(self, pyradiomics_version: _Optional[str] = ..., default_features: _Optional[_Iterable[str]] = ..., max_voxels: _Optional[int] = ..., max_upload_bytes: _Optional[int] = ..., path_access: _Optional[bool] = ..., pacs_access: _Optional[bool] = ...) -> None: ...
