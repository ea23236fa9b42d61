"""Errors the core raises for bad input.

Every error carries a one-line message that names the file, the row or column at fault and the
fix, so the CLI and the services can show it as-is (CLI: one line, non-zero exit; gRPC:
INVALID_ARGUMENT / FAILED_PRECONDITION) without a stack trace.
"""

from __future__ import annotations


class RadiogenomicsError(Exception):
    """Base class: a problem with the caller's input or set-up, not a bug in our code."""

    def __init__(self, message: str) -> None:
        # Collapse to one line: messages are shown verbatim to users and in logs.
        super().__init__(" ".join(str(message).split()))


class InputError(RadiogenomicsError, ValueError):
    """Input data or options are invalid (maps to INVALID_ARGUMENT)."""


class LimitExceeded(InputError):
    """A configured limit (upload size, voxels, batch size...) was exceeded (maps to RESOURCE_EXHAUSTED)."""


class NotFound(InputError):
    """A named thing (model, version, job) does not exist (maps to NOT_FOUND)."""


class CohortError(InputError):
    """A cohort directory or one of its tables is invalid."""


class GeneSetError(InputError):
    """A gene-set library (GMT) is invalid."""


class Precondition(InputError):
    """The server is not set up for the request (e.g. no PACS configured): FAILED_PRECONDITION."""


class Unavailable(RadiogenomicsError):
    """A system we depend on (the PACS) cannot be reached or timed out: UNAVAILABLE, worth a retry."""
