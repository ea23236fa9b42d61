from services.pb.radiogenomics.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MaskingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEEP: _ClassVar[MaskingMode]
    DROP: _ClassVar[MaskingMode]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    QUEUED: _ClassVar[JobState]
    RUNNING: _ClassVar[JobState]
    SUCCEEDED: _ClassVar[JobState]
    FAILED: _ClassVar[JobState]
    CANCELLED: _ClassVar[JobState]
KEEP: MaskingMode
DROP: MaskingMode
JOB_STATE_UNSPECIFIED: JobState
QUEUED: JobState
RUNNING: JobState
SUCCEEDED: JobState
FAILED: JobState
CANCELLED: JobState

class GeneSet(_message.Message):
    __slots__ = ("name", "genes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GENES_FIELD_NUMBER: _ClassVar[int]
    name: str
    genes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., genes: _Optional[_Iterable[str]] = ...) -> None: ...

class GeneSetList(_message.Message):
    __slots__ = ("sets",)
    SETS_FIELD_NUMBER: _ClassVar[int]
    sets: _containers.RepeatedCompositeFieldContainer[GeneSet]
    def __init__(self, sets: _Optional[_Iterable[_Union[GeneSet, _Mapping]]] = ...) -> None: ...

class LabelledProfile(_message.Message):
    __slots__ = ("profile", "histology", "radiomics")
    class RadiomicsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    HISTOLOGY_FIELD_NUMBER: _ClassVar[int]
    RADIOMICS_FIELD_NUMBER: _ClassVar[int]
    profile: _common_pb2.ExpressionProfile
    histology: str
    radiomics: _containers.ScalarMap[str, float]
    def __init__(self, profile: _Optional[_Union[_common_pb2.ExpressionProfile, _Mapping]] = ..., histology: _Optional[str] = ..., radiomics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class InlineCohort(_message.Message):
    __slots__ = ("patients",)
    PATIENTS_FIELD_NUMBER: _ClassVar[int]
    patients: _containers.RepeatedCompositeFieldContainer[LabelledProfile]
    def __init__(self, patients: _Optional[_Iterable[_Union[LabelledProfile, _Mapping]]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("model", "cohort_path", "inline", "gmt_text", "sets", "library", "single_genes", "mode", "null_sets", "seed", "min_covered", "label")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COHORT_PATH_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_NUMBER: _ClassVar[int]
    GMT_TEXT_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    SINGLE_GENES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NULL_SETS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MIN_COVERED_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    cohort_path: str
    inline: InlineCohort
    gmt_text: str
    sets: GeneSetList
    library: str
    single_genes: bool
    mode: MaskingMode
    null_sets: int
    seed: int
    min_covered: int
    label: str
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., cohort_path: _Optional[str] = ..., inline: _Optional[_Union[InlineCohort, _Mapping]] = ..., gmt_text: _Optional[str] = ..., sets: _Optional[_Union[GeneSetList, _Mapping]] = ..., library: _Optional[str] = ..., single_genes: _Optional[bool] = ..., mode: _Optional[_Union[MaskingMode, str]] = ..., null_sets: _Optional[int] = ..., seed: _Optional[int] = ..., min_covered: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class SkippedSet(_message.Message):
    __slots__ = ("gene_set", "reason")
    GENE_SET_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    gene_set: str
    reason: str
    def __init__(self, gene_set: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("job_id", "state", "model", "mode", "label", "gene_sets", "skipped", "chunks_done", "chunks_total", "evaluations", "error", "created", "updated", "attempts", "result_rows")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    GENE_SETS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DONE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_ROWS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    model: _common_pb2.ModelRef
    mode: MaskingMode
    label: str
    gene_sets: int
    skipped: _containers.RepeatedCompositeFieldContainer[SkippedSet]
    chunks_done: int
    chunks_total: int
    evaluations: int
    error: str
    created: float
    updated: float
    attempts: int
    result_rows: int
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., mode: _Optional[_Union[MaskingMode, str]] = ..., label: _Optional[str] = ..., gene_sets: _Optional[int] = ..., skipped: _Optional[_Iterable[_Union[SkippedSet, _Mapping]]] = ..., chunks_done: _Optional[int] = ..., chunks_total: _Optional[int] = ..., evaluations: _Optional[int] = ..., error: _Optional[str] = ..., created: _Optional[float] = ..., updated: _Optional[float] = ..., attempts: _Optional[int] = ..., result_rows: _Optional[int] = ...) -> None: ...

class GetResultsRequest(_message.Message):
    __slots__ = ("job_id", "outputs", "max_q_value", "page_size", "page_token")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    MAX_Q_VALUE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    outputs: _containers.RepeatedScalarFieldContainer[str]
    max_q_value: float
    page_size: int
    page_token: str
    def __init__(self, job_id: _Optional[str] = ..., outputs: _Optional[_Iterable[str]] = ..., max_q_value: _Optional[float] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class MaskingResult(_message.Message):
    __slots__ = ("gene_set", "size", "covered", "output", "auc", "null_mean", "p_value", "q_value", "delta_auc")
    GENE_SET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    COVERED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    AUC_FIELD_NUMBER: _ClassVar[int]
    NULL_MEAN_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    Q_VALUE_FIELD_NUMBER: _ClassVar[int]
    DELTA_AUC_FIELD_NUMBER: _ClassVar[int]
    gene_set: str
    size: int
    covered: int
    output: str
    auc: float
    null_mean: float
    p_value: float
    q_value: float
    delta_auc: float
    def __init__(self, gene_set: _Optional[str] = ..., size: _Optional[int] = ..., covered: _Optional[int] = ..., output: _Optional[str] = ..., auc: _Optional[float] = ..., null_mean: _Optional[float] = ..., p_value: _Optional[float] = ..., q_value: _Optional[float] = ..., delta_auc: _Optional[float] = ...) -> None: ...

class GetResultsResponse(_message.Message):
    __slots__ = ("results", "next_page_token", "total_rows")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[MaskingResult]
    next_page_token: str
    total_rows: int
    def __init__(self, results: _Optional[_Iterable[_Union[MaskingResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_rows: _Optional[int] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("states", "limit")
    STATES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[JobState]
    limit: int
    def __init__(self, states: _Optional[_Iterable[_Union[JobState, str]]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStatus]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobStatus, _Mapping]]] = ...) -> None: ...
