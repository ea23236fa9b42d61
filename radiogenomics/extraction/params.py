"""pyradiomics parameter files (pyradiomics' own YAML format), validated and hashed.

Validation is pyradiomics' own (its pykwalify schema plus its checks of image types and feature
names), so any official parameter file works and an unknown key is refused exactly as
pyradiomics would refuse it, but with a one-line message. The hash identifies the parameters in
provenance: the SHA-256 of the canonical JSON of the parsed parameters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from radiogenomics.errors import InputError

logging.getLogger("pykwalify").setLevel(logging.CRITICAL)  # its multi-line reports become our one line
_extractors = threading.local()


@dataclass(frozen=True)
class ExtractionParams:
    """A validated pyradiomics parameter set (the parsed YAML mapping; empty = pyradiomics' defaults)."""

    params: dict[str, Any]
    source: str = "pyradiomics defaults"

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.params, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.params.get("setting") or {})

    def extractor(self) -> Any:
        """A configured `RadiomicsFeatureExtractor`, built once per thread and parameter set.

        pyradiomics validates the parameters while building it (~20 ms), which matters when a
        worker extracts many small cases; one per thread keeps concurrent requests apart.
        """
        cache = getattr(_extractors, "by_hash", None)
        if cache is None:
            cache = _extractors.by_hash = {}
        if self.hash not in cache:
            if len(cache) >= 16:
                cache.clear()
            cache[self.hash] = build_extractor(self.params, self.source)
        return cache[self.hash]


def _schema_message(exc: Exception) -> str:
    found = re.findall(r"- (.+?)(?:\.: Path: '/'>|\n|$)", str(exc))
    text = "; ".join(f.strip().rstrip(".") for f in found) or " ".join(str(exc).split())
    text = re.sub(r"Key '([^']+)' was not defined\. Path: '([^']*)'", lambda m: f"unknown key {m.group(1)!r} under '{m.group(2) or '/'}'", text)
    return text


def build_extractor(params: dict[str, Any], source: str = "parameters") -> Any:
    """Build pyradiomics' extractor from parsed parameters, turning its errors into one-line InputErrors."""
    from radiomics import featureextractor  # imported lazily: pyradiomics is slow to import

    try:
        return featureextractor.RadiomicsFeatureExtractor(params)
    except Exception as exc:  # pykwalify SchemaError, or pyradiomics' ValueError for names
        detail = _schema_message(exc) if type(exc).__name__ == "SchemaError" else " ".join(str(exc).split())
        raise InputError(f"{source}: invalid pyradiomics parameters: {detail}; see pyradiomics' parameter file documentation") from None


MAX_PARAMS_CHARS = 64 * 1024


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors/aliases: a parameter file needs none, and nested aliases expand exponentially."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases are not allowed", self.peek_event().start_mark)
        return super().compose_node(parent, index)


def parse_params(text: str | None, source: str = "params") -> ExtractionParams:
    """Parse and validate YAML parameter text (None or blank: pyradiomics' defaults)."""
    if text is None or not text.strip():
        return ExtractionParams({})
    if len(text) > MAX_PARAMS_CHARS:
        raise InputError(f"{source}: {len(text):,} characters, over the limit of {MAX_PARAMS_CHARS:,} for a parameter file")
    try:
        params = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = "YAML aliases (*name) are not allowed" if "aliases are not allowed" in str(exc) else "not valid YAML"
        raise InputError(f"{source}: {problem}{where}; write it in pyradiomics' parameter file format") from None
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InputError(f"{source}: a parameter file must be a YAML mapping (imageType, featureClass, setting), got {type(params).__name__}")
    parsed = ExtractionParams(params, source)
    parsed.extractor()  # validates; the built extractor is cached for the extraction that follows
    return parsed


def load_params(path: str | Path | None) -> ExtractionParams:
    """Read and validate a pyradiomics parameter file (None: pyradiomics' defaults)."""
    if path is None:
        return ExtractionParams({})
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: parameter file not found; pass a pyradiomics YAML parameter file")
    return parse_params(path.read_text(encoding="utf-8"), str(path))
