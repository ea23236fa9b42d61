from services.pb.radiogenomics.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MissingGenesPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REJECT: _ClassVar[MissingGenesPolicy]
    IMPUTE_TRAINING_MEAN: _ClassVar[MissingGenesPolicy]

class OutputForm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NAMED: _ClassVar[OutputForm]
    COMPACT: _ClassVar[OutputForm]
REJECT: MissingGenesPolicy
IMPUTE_TRAINING_MEAN: MissingGenesPolicy
NAMED: OutputForm
COMPACT: OutputForm

class PredictRequest(_message.Message):
    __slots__ = ("model", "profile", "missing_genes", "output")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MISSING_GENES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    profile: _common_pb2.ExpressionProfile
    missing_genes: MissingGenesPolicy
    output: OutputForm
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., profile: _Optional[_Union[_common_pb2.ExpressionProfile, _Mapping]] = ..., missing_genes: _Optional[_Union[MissingGenesPolicy, str]] = ..., output: _Optional[_Union[OutputForm, str]] = ...) -> None: ...

class PredictBatchRequest(_message.Message):
    __slots__ = ("model", "profiles", "missing_genes", "output")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    MISSING_GENES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    profiles: _containers.RepeatedCompositeFieldContainer[_common_pb2.ExpressionProfile]
    missing_genes: MissingGenesPolicy
    output: OutputForm
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., profiles: _Optional[_Iterable[_Union[_common_pb2.ExpressionProfile, _Mapping]]] = ..., missing_genes: _Optional[_Union[MissingGenesPolicy, str]] = ..., output: _Optional[_Union[OutputForm, str]] = ...) -> None: ...

class FeaturePrediction(_message.Message):
    __slots__ = ("name", "probability_high", "predicted_high", "cut_point")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_HIGH_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_HIGH_FIELD_NUMBER: _ClassVar[int]
    CUT_POINT_FIELD_NUMBER: _ClassVar[int]
    name: str
    probability_high: float
    predicted_high: bool
    cut_point: float
    def __init__(self, name: _Optional[str] = ..., probability_high: _Optional[float] = ..., predicted_high: _Optional[bool] = ..., cut_point: _Optional[float] = ...) -> None: ...

class HistologyPrediction(_message.Message):
    __slots__ = ("probabilities", "predicted_class")
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_CLASS_FIELD_NUMBER: _ClassVar[int]
    probabilities: _containers.ScalarMap[str, float]
    predicted_class: str
    def __init__(self, probabilities: _Optional[_Mapping[str, float]] = ..., predicted_class: _Optional[str] = ...) -> None: ...

class ProfilePrediction(_message.Message):
    __slots__ = ("profile_id", "histology", "features", "imputed_genes", "unknown_genes", "histology_probabilities", "feature_probabilities")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    HISTOLOGY_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    IMPUTED_GENES_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_GENES_FIELD_NUMBER: _ClassVar[int]
    HISTOLOGY_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    histology: HistologyPrediction
    features: _containers.RepeatedCompositeFieldContainer[FeaturePrediction]
    imputed_genes: int
    unknown_genes: int
    histology_probabilities: _containers.RepeatedScalarFieldContainer[float]
    feature_probabilities: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, profile_id: _Optional[str] = ..., histology: _Optional[_Union[HistologyPrediction, _Mapping]] = ..., features: _Optional[_Iterable[_Union[FeaturePrediction, _Mapping]]] = ..., imputed_genes: _Optional[int] = ..., unknown_genes: _Optional[int] = ..., histology_probabilities: _Optional[_Iterable[float]] = ..., feature_probabilities: _Optional[_Iterable[float]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("prediction", "model", "request_id", "timing")
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    prediction: ProfilePrediction
    model: _common_pb2.ModelRef
    request_id: str
    timing: _common_pb2.Timing
    def __init__(self, prediction: _Optional[_Union[ProfilePrediction, _Mapping]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., request_id: _Optional[str] = ..., timing: _Optional[_Union[_common_pb2.Timing, _Mapping]] = ...) -> None: ...

class PredictBatchResponse(_message.Message):
    __slots__ = ("predictions", "model", "request_id", "timing")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[ProfilePrediction]
    model: _common_pb2.ModelRef
    request_id: str
    timing: _common_pb2.Timing
    def __init__(self, predictions: _Optional[_Iterable[_Union[ProfilePrediction, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., request_id: _Optional[str] = ..., timing: _Optional[_Union[_common_pb2.Timing, _Mapping]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model", "versions", "genes", "histology_classes", "features", "cut_points", "outputs", "cv_auc", "cv_summary_auc", "created", "code_version", "training_data_hash", "max_batch_profiles", "best_family", "ensemble_members")
    class CvAucEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class BestFamilyEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    GENES_FIELD_NUMBER: _ClassVar[int]
    HISTOLOGY_CLASSES_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    CUT_POINTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    CV_AUC_FIELD_NUMBER: _ClassVar[int]
    CV_SUMMARY_AUC_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATA_HASH_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_PROFILES_FIELD_NUMBER: _ClassVar[int]
    BEST_FAMILY_FIELD_NUMBER: _ClassVar[int]
    ENSEMBLE_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    model: _common_pb2.ModelRef
    versions: _containers.RepeatedScalarFieldContainer[str]
    genes: _containers.RepeatedScalarFieldContainer[str]
    histology_classes: _containers.RepeatedScalarFieldContainer[str]
    features: _containers.RepeatedScalarFieldContainer[str]
    cut_points: _containers.RepeatedScalarFieldContainer[float]
    outputs: _containers.RepeatedScalarFieldContainer[str]
    cv_auc: _containers.ScalarMap[str, float]
    cv_summary_auc: float
    created: str
    code_version: str
    training_data_hash: str
    max_batch_profiles: int
    best_family: _containers.ScalarMap[str, str]
    ensemble_members: int
    def __init__(self, model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., versions: _Optional[_Iterable[str]] = ..., genes: _Optional[_Iterable[str]] = ..., histology_classes: _Optional[_Iterable[str]] = ..., features: _Optional[_Iterable[str]] = ..., cut_points: _Optional[_Iterable[float]] = ..., outputs: _Optional[_Iterable[str]] = ..., cv_auc: _Optional[_Mapping[str, float]] = ..., cv_summary_auc: _Optional[float] = ..., created: _Optional[str] = ..., code_version: _Optional[str] = ..., training_data_hash: _Optional[str] = ..., max_batch_profiles: _Optional[int] = ..., best_family: _Optional[_Mapping[str, str]] = ..., ensemble_members: _Optional[int] = ...) -> None: ...
