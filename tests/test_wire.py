"""Reading packed float32 fields from the wire form gives exactly the element-wise values."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.pb.inference import grpc_predict_v2_pb2 as v2
from services.pb.radiogenomics.v1 import common_pb2
from services.wire import packed_float32

floats32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(floats32, max_size=300))
def test_dense_vector_round_trip(values: list[float]) -> None:
    message = common_pb2.DenseVector(values=values)
    got = packed_float32(message, "values")
    expected = np.asarray(message.values, dtype=np.float32)
    assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()


@settings(max_examples=100, deadline=None)
@given(st.lists(floats32, max_size=100), st.lists(st.integers(-5, 5), max_size=3))
def test_tensor_contents_with_and_without_other_fields(values: list[float], ints: list[int]) -> None:
    message = v2.InferTensorContents(fp32_contents=values, int_contents=ints)
    got = packed_float32(message, "fp32_contents")
    assert got.tobytes() == np.asarray(values, dtype=np.float32).tobytes()


def test_unpacked_encoding_from_a_foreign_client_is_read_too() -> None:
    values = [1.5, -2.25, 300.0]
    wire = b"".join(bytes([(1 << 3) | 5]) + struct.pack("<f", v) for v in values)  # field 1, fixed32, unpacked
    message = common_pb2.DenseVector.FromString(wire)
    assert packed_float32(message, "values").tolist() == values
