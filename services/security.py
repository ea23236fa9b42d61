"""Access control, audit and time limits at the edge of the app.

Bearer tokens: a file of `name:token` lines (`--auth-tokens FILE` or $RADIOGENOMICS_AUTH_TOKENS);
every RPC except grpc.health.v1 must carry `authorization: Bearer <token>`. Only SHA-256 digests
of the tokens are kept in memory; the token's *name* identifies the caller in the audit log.
A missing or wrong token gets UNAUTHENTICATED with the same message either way.

Audit: one JSON line per request (time, token name, method, model version, request and response
bytes, status, duration, SHA-256 of the request bytes). Nothing of the request's content is
written: no profile ids, case ids, file names or DICOM tags, so no patient identifier can leak
into the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from radiogenomics.errors import InputError

TOKENS_ENV = "RADIOGENOMICS_AUTH_TOKENS"
UNAUTHENTICATED_MESSAGE = "missing or invalid bearer token; send the metadata `authorization: Bearer <token>`"
MIN_TOKEN_CHARS = 16
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
audit_logger = logging.getLogger("radiogenomics.audit")


class SecurityConfig(BaseModel):
    """Access control, audit and the per-request time limit of the app's edge."""

    auth_tokens_file: Path | None = Field(None, description="`name:token` lines; None = no access control")
    audit_dir: Path | None = Field(None, description="folder for audit-<host>-<pid>.jsonl files; None = the replica log")
    request_timeout_s: float = Field(600.0, gt=0, description="longest time one unary RPC may take")


def load_tokens(path: Path) -> dict[str, str]:
    """SHA-256 hex digest of each token -> its name; a malformed file is refused in one line."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputError(f"auth tokens file {path}: cannot read it ({exc.strerror})") from None
    tokens: dict[str, str] = {}
    names: set[str] = set()
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not _NAME.match(name):
            raise InputError(f"auth tokens file {path}, line {number}: expected `name:token` with a name of letters, "
                             "digits and ._@-")
        if len(token) < MIN_TOKEN_CHARS:
            raise InputError(f"auth tokens file {path}, line {number}: the token of {name!r} is shorter than "
                             f"{MIN_TOKEN_CHARS} characters; generate one with `openssl rand -hex 32`")
        digest = hashlib.sha256(token.encode()).hexdigest()
        if name in names or digest in tokens:
            raise InputError(f"auth tokens file {path}, line {number}: duplicate name or token ({name!r})")
        names.add(name)
        tokens[digest] = name
    if not tokens:
        raise InputError(f"auth tokens file {path} holds no `name:token` line; add one or leave access control off")
    return tokens


def caller(tokens: dict[str, str], metadata: list[tuple[str, str]] | tuple) -> str | None:
    """The name of the token in the `authorization` metadata, or None."""
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token:
                return tokens.get(hashlib.sha256(token.strip().encode()).hexdigest())
    return None


class AuditLog:
    """Appends one JSON line per request: to a file per process in `folder`, or to the logger."""

    def __init__(self, folder: Path | None) -> None:
        self._lock = threading.Lock()
        self._file = None
        if folder is not None:
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True)
            self._file = (folder / f"audit-{socket.gethostname()}-{os.getpid()}.jsonl").open("a", buffering=1)

    def write(self, *, token: str | None, method: str, status: str, started: float, request_bytes: int,
              response_bytes: int, input_sha256: str, model_version: str = "") -> None:
        record = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "token": token or "-", "method": method, "model_version": model_version, "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1e3, 2),
            "request_bytes": request_bytes, "response_bytes": response_bytes, "input_sha256": input_sha256,
        }
        line = json.dumps(record, separators=(",", ":"))
        if self._file is None:
            audit_logger.info(line)
            return
        with self._lock:
            self._file.write(line + "\n")


class Guard:
    """What the edge needs from a deployment's security settings, loaded in the replica."""

    def __init__(self, config: SecurityConfig) -> None:
        self.config = config
        self.tokens = load_tokens(config.auth_tokens_file) if config.auth_tokens_file else None
        self.audit = AuditLog(config.audit_dir)
