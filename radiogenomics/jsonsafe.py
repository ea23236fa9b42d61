"""Strict JSON for results: NaN/inf become null and numpy scalars plain numbers.

Metrics carry NaN where an AUC is undefined (a target with one class); JSON has no NaN, and
model cards and metrics files must be readable by any strict parser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """Nested dicts/lists with NaN/inf as None and numpy scalars as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
