"""The results store: benchmark cells and their metric result rows in one SQLite file.

One file (stdlib ``sqlite3``, WAL mode, so readers never block the writer). A cell is
written once, in one transaction (``BEGIN IMMEDIATE``: the cell and all its rows, or
nothing), keyed by its content hash: a process killed at any moment leaves every cell
either whole or absent, and a finished cell is never written twice. Writers that meet
another writer's lock wait for it (``busy_timeout``); ``expunge bench`` also holds an
exclusive lock file beside the store for its whole run, so a second bench on the same
store refuses at once instead of computing the same cells twice (the operating system
drops that lock when its process dies, even by ``kill -9``).

The schema is versioned (``meta`` table); :data:`MIGRATIONS` step a file from version
``k`` to ``k + 1`` inside one transaction, so an older file is upgraded on open and a
file from a newer expunge is refused with one line.

The row contract other code reads (the leaderboard, notebooks): :meth:`ResultsStore.frame`
gives a pandas DataFrame with one row per metric result row and its cell's columns
joined: ``cell_hash, grid, dataset, forget_rule, method, label, hyperparameters,
scenario_seed, members, status, metric, split, value, spread, reference,
reference_kind, reference_spread, definition, n_models, unit, judgement, ...``.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from expunge.audit.results import MetricResult
from expunge.errors import ExpungeError

STORE_FORMAT = "expunge-results"
CRASH_ENV = "EXPUNGE_CRASH_AT"  # tests: SIGKILL this process at a named point of writing a cell
CRASH_POINTS = ("cell-before-commit", "cell-after-commit")

CELL_COLUMNS = ("cell_hash", "grid", "dataset", "forget_rule", "method", "label", "hyperparameters",
                "hyperparameters_used", "scenario_seed", "members", "shadow_members", "recipe", "model", "status",
                "error", "code_version", "engine_version", "machine", "device", "started", "finished", "wall_s",
                "cost", "timings", "parts")
ROW_COLUMNS = ("cell_hash", "position", "metric", "split", "method", "value", "spread", "reference", "reference_kind",
               "reference_spread", "definition", "n_models", "unit", "label", "chance", "headline", "decides_verdict",
               "digits", "judgement", "judgement_reason", "details")
JSON_CELL_COLUMNS = ("hyperparameters", "hyperparameters_used", "recipe", "machine", "cost", "timings", "parts")
FLOAT_ROW_COLUMNS = ("value", "spread", "reference", "reference_spread", "chance")
FILTERS = ("grid", "dataset", "forget_rule", "method", "label", "scenario_seed", "members", "status", "metric",
           "split")


def _create_v1(db: sqlite3.Connection) -> None:
    db.execute("""CREATE TABLE cells (
        cell_hash TEXT PRIMARY KEY, grid TEXT NOT NULL, dataset TEXT NOT NULL, forget_rule TEXT NOT NULL,
        method TEXT NOT NULL, label TEXT NOT NULL, hyperparameters TEXT NOT NULL, hyperparameters_used TEXT NOT NULL,
        scenario_seed INTEGER NOT NULL, members INTEGER NOT NULL, shadow_members INTEGER NOT NULL,
        recipe TEXT NOT NULL, model TEXT, status TEXT NOT NULL, error TEXT, code_version TEXT NOT NULL,
        engine_version TEXT NOT NULL, machine TEXT NOT NULL, device TEXT NOT NULL, started TEXT NOT NULL,
        finished TEXT NOT NULL, wall_s REAL NOT NULL, cost TEXT, timings TEXT NOT NULL, parts TEXT NOT NULL)""")
    db.execute("""CREATE TABLE rows (
        cell_hash TEXT NOT NULL REFERENCES cells(cell_hash), position INTEGER NOT NULL, metric TEXT NOT NULL,
        split TEXT NOT NULL, method TEXT NOT NULL, value REAL, spread REAL, reference REAL, reference_kind TEXT,
        reference_spread REAL, definition TEXT, n_models INTEGER, unit TEXT, label TEXT, chance REAL,
        headline INTEGER, decides_verdict INTEGER, digits INTEGER, judgement TEXT, judgement_reason TEXT,
        details TEXT, PRIMARY KEY (cell_hash, position))""")
    db.execute("CREATE INDEX rows_metric ON rows(metric, split)")
    db.execute("CREATE INDEX cells_scenario ON cells(dataset, forget_rule, method)")


# MIGRATIONS[k] takes a file from schema version k to k + 1 (version 0: an empty file).
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_create_v1]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreBusy(ExpungeError):
    """Another ``expunge bench`` is writing to this store."""


class ResultsStore:
    """An open results store (created, or upgraded to the current schema, on open)."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise ExpungeError(f"{self.path} is a folder: pass a file for the results store (e.g. results.sqlite)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=timeout_s)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.DatabaseError as error:
            raise ExpungeError(f"{self.path} is not an expunge results store ({error})") from None
        self._lock_file: Any = None

    # ------------------------------------------------------------------ schema
    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "meta" not in tables:
                raise ExpungeError(f"{self.path} is an SQLite file but not an expunge results store "
                                   f"(tables {', '.join(sorted(tables))})")
            if "meta" not in tables:
                db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                db.executemany("INSERT INTO meta VALUES (?, ?)", [("format", STORE_FORMAT), ("schema", "0")])
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("format") != STORE_FORMAT:
                raise ExpungeError(f"{self.path} is not an expunge results store (format {meta.get('format')!r})")
            version = int(meta.get("schema", 0))
            if version > SCHEMA_VERSION:
                raise ExpungeError(f"{self.path} was written by a newer expunge (results schema {version}; this "
                                   f"version reads up to {SCHEMA_VERSION}): upgrade expunge to read it")
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](db)
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(step + 1),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0])

    def close(self) -> None:
        self.release()
        self._db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ one bench at a time
    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def acquire(self) -> None:
        """Hold the store for one bench run; refuse (:class:`StoreBusy`) when another process holds it."""
        if self._lock_file is not None:
            return
        handle = open(self.lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StoreBusy(f"{self.path} is in use by another expunge bench ({holder}): wait for it to finish, "
                            "or give this run its own --store") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._lock_file = handle

    def release(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    @contextmanager
    def held(self) -> Iterator[ResultsStore]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    # ------------------------------------------------------------------ writing
    def has(self, cell_hash: str) -> bool:
        return self._db.execute("SELECT 1 FROM cells WHERE cell_hash = ?", (cell_hash,)).fetchone() is not None

    def status(self, cell_hash: str) -> str | None:
        row = self._db.execute("SELECT status FROM cells WHERE cell_hash = ?", (cell_hash,)).fetchone()
        return None if row is None else row[0]

    def write(self, cell: Any, result: Any, replace_failed: bool = False) -> bool:
        """Write a finished cell and its rows in one transaction; False (nothing written) when it is there already.

        ``cell``: a :class:`~expunge.bench.grid.Cell`; ``result``: its
        :class:`~expunge.bench.grid.CellResult`. ``replace_failed``: a stored *failed* cell
        is replaced (``--retry-failed``); a finished ``ok`` cell never is.
        """
        if cell.key != result.key:
            raise ExpungeError(f"result {result.key} does not belong to cell {cell.key}")
        from expunge._version import __version__
        from expunge.training.engine import ENGINE_VERSION

        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            existing = self.status(cell.key)
            if existing is not None and not (replace_failed and existing == "failed"):
                db.execute("ROLLBACK")
                return False
            if existing is not None:
                db.execute("DELETE FROM rows WHERE cell_hash = ?", (cell.key,))
                db.execute("DELETE FROM cells WHERE cell_hash = ?", (cell.key,))
            values = {
                "cell_hash": cell.key, "grid": cell.grid, "dataset": cell.dataset.name,
                "forget_rule": cell.forget_rule, "method": cell.method.name, "label": cell.method.label,
                "hyperparameters": _json(cell.method.spec), "hyperparameters_used": _json(result.hyperparameters_used),
                "scenario_seed": cell.scenario_seed, "members": cell.members, "shadow_members": cell.shadow_members,
                "recipe": _json(cell.recipe), "model": cell.dataset.model, "status": result.status,
                "error": result.error, "code_version": cell.parts.get("code", __version__),
                "engine_version": cell.parts.get("engine", ENGINE_VERSION), "machine": _json(result.machine),
                "device": result.device, "started": result.started, "finished": result.finished,
                "wall_s": float(result.wall_s), "cost": None if result.cost is None else _json(result.cost),
                "timings": _json(result.timings), "parts": _json(cell.parts),
            }
            db.execute(f"INSERT INTO cells ({', '.join(CELL_COLUMNS)}) VALUES ({', '.join('?' * len(CELL_COLUMNS))})",
                       [values[c] for c in CELL_COLUMNS])
            db.executemany(f"INSERT INTO rows ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})",
                           [_row_values(cell.key, position, row) for position, row in enumerate(result.rows)])
            _crash_point("cell-before-commit")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        _crash_point("cell-after-commit")
        return True

    # ------------------------------------------------------------------ reading
    def cells(self, **filters: Any) -> list[dict[str, Any]]:
        """Stored cells (JSON columns decoded), filtered by equality on any of :data:`FILTERS` but metric/split."""
        where, params = _where({k: v for k, v in filters.items() if k not in ("metric", "split")}, "c")
        rows = self._db.execute(f"SELECT {', '.join('c.' + c for c in CELL_COLUMNS)} FROM cells c {where} "
                                "ORDER BY c.dataset, c.forget_rule, c.scenario_seed, c.members, c.label", params)
        return [_decode_cell(dict(zip(CELL_COLUMNS, row))) for row in rows]

    def rows(self, cell_hash: str) -> list[MetricResult]:
        """A cell's result rows as typed :class:`MetricResult` values."""
        found = self._db.execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM rows WHERE cell_hash = ? ORDER BY position",
                                 (cell_hash,)).fetchall()
        results = []
        for values in found:
            data = _decode_row(dict(zip(ROW_COLUMNS, values)))
            results.append(MetricResult.from_json(data))
        return results

    def frame(self, **filters: Any):
        """A pandas DataFrame: one row per metric result row, its cell's columns joined (the row contract)."""
        import pandas as pd

        where, params = _where(filters, "c")
        cell_columns = [c for c in CELL_COLUMNS if c not in ("method", "label", "parts", "timings", "machine")]
        row_columns = [c for c in ROW_COLUMNS if c not in ("cell_hash", "position", "label")]
        select = ", ".join([f"c.{c}" for c in cell_columns] + ["c.label AS label"] + [f"r.{c}" for c in row_columns]
                           + ["r.label AS metric_label"])
        query = (f"SELECT {select} FROM rows r JOIN cells c ON c.cell_hash = r.cell_hash {where} "
                 "ORDER BY c.dataset, c.forget_rule, c.scenario_seed, c.members, c.label, r.position")
        records = self._db.execute(query, params).fetchall()
        names = cell_columns + ["label"] + row_columns + ["metric_label"]  # label: the cell's (method + settings)
        frame = pd.DataFrame.from_records(records, columns=names)
        for column in ("hyperparameters", "hyperparameters_used", "recipe", "cost", "details"):
            frame[column] = frame[column].map(lambda text: None if text is None else json.loads(text))
        for column in FLOAT_ROW_COLUMNS + ("wall_s",):
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        frame["decides_verdict"] = frame["decides_verdict"].astype(bool)
        front = ["cell_hash", "grid", "dataset", "forget_rule", "method", "label", "hyperparameters", "scenario_seed",
                 "members", "metric", "split", "value", "spread", "reference", "reference_kind", "reference_spread"]
        return frame[front + [c for c in frame.columns if c not in front]]

    def export_csv(self, path: str | Path, **filters: Any) -> Path:
        """Write :meth:`frame` (JSON columns as JSON text) to a CSV file; returns its path."""
        frame = self.frame(**filters)
        for column in ("hyperparameters", "hyperparameters_used", "recipe", "cost", "details"):
            frame[column] = frame[column].map(lambda value: "" if value is None else _json(value))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        return path

    def integrity(self) -> str:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0]


def _where(filters: dict[str, Any], alias: str) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for key, value in filters.items():
        if value is None:
            continue
        if key not in FILTERS:
            raise ExpungeError(f"cannot filter results by {key!r}; filters: {', '.join(FILTERS)}")
        table = "r" if key in ("metric", "split") else alias
        column = "label" if key == "label" else key
        values = value if isinstance(value, (list, tuple, set)) else [value]
        clauses.append(f"{table}.{column} IN ({', '.join('?' * len(values))})")
        params += list(values)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _number(value: Any) -> float | None:
    """SQLite stores NaN as NULL; infinities it keeps."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _row_values(cell_hash: str, position: int, row: dict[str, Any]) -> list[Any]:
    values = {"cell_hash": cell_hash, "position": position} | {c: row.get(c) for c in ROW_COLUMNS[2:]}
    for column in FLOAT_ROW_COLUMNS:
        values[column] = _number(values[column])
    values["decides_verdict"] = int(bool(values["decides_verdict"]))
    values["details"] = _json(dict(row.get("details") or {}))
    return [values[c] for c in ROW_COLUMNS]


def _decode_row(data: dict[str, Any]) -> dict[str, Any]:
    data["details"] = json.loads(data["details"]) if data["details"] else {}
    data["decides_verdict"] = bool(data["decides_verdict"])
    if data["value"] is None:
        data["value"] = math.nan
    return data


def _decode_cell(data: dict[str, Any]) -> dict[str, Any]:
    for column in JSON_CELL_COLUMNS:
        if data.get(column) is not None:
            data[column] = json.loads(data[column])
    return data


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
