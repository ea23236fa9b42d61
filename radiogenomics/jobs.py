"""A durable store of masking jobs: their requests, progress by chunk, and results (SQLite).

Everything a job needs to run again lives here or in its folder (`<data_dir>/jobs/<id>/`), so a
restarted service finds every queued or running job and resumes it from the last stored chunk;
nothing is lost silently. Writes are single transactions: a job's results appear all at once,
never half-written. The embedded SQLite file suits one masking replica; a shared database would
be the step for several.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd

from radiogenomics.errors import NotFound

RESULT_COLUMNS = ["gene_set", "size", "covered", "output", "auc", "null_mean", "p_value", "q_value", "delta_auc"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    model_name TEXT NOT NULL, model_version TEXT NOT NULL, mode TEXT NOT NULL, label TEXT NOT NULL,
    request TEXT NOT NULL, gene_sets INTEGER NOT NULL, skipped TEXT NOT NULL DEFAULT '{}',
    chunks_total INTEGER NOT NULL DEFAULT 0, chunks_done INTEGER NOT NULL DEFAULT 0,
    evaluations INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL DEFAULT 0,
    result_rows INTEGER NOT NULL DEFAULT 0, cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chunks (
    job_id TEXT NOT NULL, chunk INTEGER NOT NULL, aucs BLOB NOT NULL, rows INTEGER NOT NULL, cols INTEGER NOT NULL,
    evaluations INTEGER NOT NULL, PRIMARY KEY (job_id, chunk)
);
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT NOT NULL, gene_set TEXT NOT NULL, size INTEGER NOT NULL, covered INTEGER NOT NULL, output TEXT NOT NULL,
    auc REAL, null_mean REAL, p_value REAL, q_value REAL, delta_auc REAL
);
CREATE INDEX IF NOT EXISTS results_by_job ON results (job_id, output, q_value);
"""


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = (JobState.QUEUED, JobState.RUNNING)
TERMINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass
class JobRecord:
    """One job as stored."""

    id: str
    state: JobState
    created: float
    updated: float
    model_name: str
    model_version: str
    mode: str
    label: str
    request: dict
    gene_sets: int
    skipped: dict[str, str] = field(default_factory=dict)
    chunks_total: int = 0
    chunks_done: int = 0
    evaluations: int = 0
    error: str = ""
    attempts: int = 0
    result_rows: int = 0
    cancel_requested: bool = False


class JobStore:
    """Jobs in `<folder>/jobs.sqlite`, inputs in `<folder>/jobs/<id>/`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "jobs.sqlite"
        self._lock = threading.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.row_factory = sqlite3.Row
        return db

    def _write(self, sql: str, params: Sequence = ()) -> int:
        with self._lock, self._connect() as db:
            return db.execute(sql, params).rowcount

    def job_dir(self, job_id: str) -> Path:
        return self.folder / "jobs" / job_id

    # -- jobs ------------------------------------------------------------------------------------

    def create(self, *, model_name: str, model_version: str, mode: str, label: str, request: dict, gene_sets: int,
               job_id: str | None = None) -> JobRecord:
        job_id = job_id or uuid.uuid4().hex
        now = time.time()
        self._write(
            "INSERT INTO jobs (id, state, created, updated, model_name, model_version, mode, label, request, gene_sets) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, JobState.QUEUED.value, now, now, model_name, model_version, mode, label, json.dumps(request), gene_sets),
        )
        return self.get(job_id)

    @staticmethod
    def _record(row: sqlite3.Row) -> JobRecord:
        return JobRecord(
            id=row["id"], state=JobState(row["state"]), created=row["created"], updated=row["updated"],
            model_name=row["model_name"], model_version=row["model_version"], mode=row["mode"], label=row["label"],
            request=json.loads(row["request"]), gene_sets=row["gene_sets"], skipped=json.loads(row["skipped"]),
            chunks_total=row["chunks_total"], chunks_done=row["chunks_done"], evaluations=row["evaluations"],
            error=row["error"], attempts=row["attempts"], result_rows=row["result_rows"],
            cancel_requested=bool(row["cancel_requested"]),
        )

    def get(self, job_id: str) -> JobRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job_id {job_id!r} is not known here; list jobs with ListJobs")
        return self._record(row)

    def list(self, states: Iterable[JobState] = (), limit: int = 100) -> list[JobRecord]:
        states = [JobState(s).value for s in states]
        where = f"WHERE state IN ({','.join('?' * len(states))})" if states else ""
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM jobs {where} ORDER BY created DESC, id LIMIT ?", (*states, limit)).fetchall()
        return [self._record(r) for r in rows]

    def active_count(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)", tuple(s.value for s in ACTIVE)).fetchone()[0]

    def state_counts(self) -> dict[JobState, int]:
        """Jobs per state (every state present, zeros included)."""
        with self._connect() as db:
            rows = dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
        return {state: int(rows.get(state.value, 0)) for state in JobState}

    def unfinished(self) -> list[JobRecord]:
        """Queued or running jobs, oldest first: what a (re)started service must run."""
        return sorted(self.list(ACTIVE, limit=1_000_000), key=lambda r: (r.created, r.id))

    def start(self, job_id: str, chunks_total: int, skipped: dict[str, str]) -> None:
        """Mark a job running (again); counts the attempt."""
        self._write("UPDATE jobs SET state = ?, chunks_total = ?, skipped = ?, attempts = attempts + 1, updated = ? "
                    "WHERE id = ? AND state IN (?, ?)",
                    (JobState.RUNNING.value, chunks_total, json.dumps(skipped), time.time(), job_id, *(s.value for s in ACTIVE)))

    def fail(self, job_id: str, reason: str) -> None:
        self._write("UPDATE jobs SET state = ?, error = ?, updated = ? WHERE id = ? AND state IN (?, ?)",
                    (JobState.FAILED.value, " ".join(reason.split()), time.time(), job_id, *(s.value for s in ACTIVE)))
        self._write("DELETE FROM chunks WHERE job_id = ?", (job_id,))

    def request_cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued job at once; a running job stops at its next chunk. Finished jobs are unchanged."""
        record = self.get(job_id)
        if record.state == JobState.QUEUED:
            self._write("UPDATE jobs SET state = ?, cancel_requested = 1, updated = ? WHERE id = ? AND state = ?",
                        (JobState.CANCELLED.value, time.time(), job_id, JobState.QUEUED.value))
        elif record.state == JobState.RUNNING:
            self._write("UPDATE jobs SET cancel_requested = 1, updated = ? WHERE id = ?", (time.time(), job_id))
        return self.get(job_id)

    def mark_cancelled(self, job_id: str) -> None:
        self._write("UPDATE jobs SET state = ?, updated = ? WHERE id = ?", (JobState.CANCELLED.value, time.time(), job_id))
        self._write("DELETE FROM chunks WHERE job_id = ?", (job_id,))

    # -- progress --------------------------------------------------------------------------------

    def save_chunk(self, job_id: str, chunk: int, aucs: np.ndarray, evaluations: int) -> None:
        """Store one finished chunk and advance the job's progress (one transaction)."""
        aucs = np.ascontiguousarray(aucs, dtype=np.float64)
        with self._lock, self._connect() as db:
            db.execute("BEGIN")
            inserted = db.execute("INSERT OR IGNORE INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
                                  (job_id, chunk, aucs.tobytes(), aucs.shape[0], aucs.shape[1], evaluations)).rowcount
            if inserted:
                db.execute("UPDATE jobs SET chunks_done = chunks_done + 1, evaluations = evaluations + ?, updated = ? "
                           "WHERE id = ?", (evaluations, time.time(), job_id))
            db.execute("COMMIT")

    def chunks(self, job_id: str) -> dict[int, np.ndarray]:
        with self._connect() as db:
            rows = db.execute("SELECT chunk, aucs, rows, cols FROM chunks WHERE job_id = ?", (job_id,)).fetchall()
        return {r["chunk"]: np.frombuffer(r["aucs"], dtype=np.float64).reshape(r["rows"], r["cols"]) for r in rows}

    def finish(self, job_id: str, table: pd.DataFrame) -> None:
        """Store the results and mark the job succeeded, in one transaction; chunk data is dropped."""
        frame = table.reindex(columns=RESULT_COLUMNS)
        rows = [(job_id, *(None if isinstance(v, float) and np.isnan(v) else v for v in rec))
                for rec in frame.itertuples(index=False, name=None)]
        with self._lock, self._connect() as db:
            db.execute("BEGIN")
            db.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
            db.executemany(f"INSERT INTO results VALUES (?, {', '.join('?' * len(RESULT_COLUMNS))})", rows)
            db.execute("UPDATE jobs SET state = ?, result_rows = ?, updated = ? WHERE id = ?",
                       (JobState.SUCCEEDED.value, len(rows), time.time(), job_id))
            db.execute("DELETE FROM chunks WHERE job_id = ?", (job_id,))
            db.execute("COMMIT")

    def results(self, job_id: str, outputs: Sequence[str] = (), max_q: float | None = None, offset: int = 0,
                limit: int = 500) -> tuple[pd.DataFrame, int]:
        """One page of results in stored order, and the number of rows matching the filter."""
        where, params = ["job_id = ?"], [job_id]
        if outputs:
            where.append(f"output IN ({','.join('?' * len(outputs))})")
            params += list(outputs)
        if max_q is not None:
            where.append("q_value <= ?")
            params.append(max_q)
        clause = " AND ".join(where)
        with self._connect() as db:
            total = db.execute(f"SELECT COUNT(*) FROM results WHERE {clause}", params).fetchone()[0]
            frame = pd.read_sql_query(f"SELECT {', '.join(RESULT_COLUMNS)} FROM results WHERE {clause} "
                                      "ORDER BY rowid LIMIT ? OFFSET ?", db, params=[*params, limit, offset])
        return frame, total
