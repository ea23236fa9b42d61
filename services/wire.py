"""Fast reading of packed float32 fields from protobuf messages.

Converting a repeated-float container of 21,766 genes to numpy element by element costs ~2 ms
per profile, more than the model's forward pass. A packed float field is, on the wire, a tag, a
length and the little-endian floats themselves, so serialising the (small) enclosing message and
viewing the payload is ~100x faster and gives the same values.
"""

from __future__ import annotations

import numpy as np
from google.protobuf.message import Message


def _varint(buffer: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buffer[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def packed_float32(message: Message, field: str) -> np.ndarray:
    """The repeated float `field` of `message` as float32, read from the wire form.

    Falls back to the element-wise conversion if the message holds any other field, or the field
    is not a single packed run (both are legal protobuf, just not what our clients send).
    """
    number = message.DESCRIPTOR.fields_by_name[field].number
    present = [f.name for f, _ in message.ListFields()]
    if present == [field]:
        wire = message.SerializeToString()
        tag, pos = _varint(wire, 0)
        if tag == (number << 3) | 2:
            length, pos = _varint(wire, pos)
            if pos + length == len(wire) and length % 4 == 0:
                return np.frombuffer(wire, dtype="<f4", count=length // 4, offset=pos).astype(np.float32)
    return np.asarray(getattr(message, field), dtype=np.float32)
