"""The deletion ledger: an append-only, hash-chained record of every deletion request served.

One SQLite file (stdlib ``sqlite3``). Each entry records the request ID, the time, a
sha256 of the forget IDs (never the records themselves), the model's content hash before
and after, the method (exact or approximate) and its hyperparameters, the cost, an audit
summary when one was run, and the previous entry's hash; its own hash covers all of that,
so editing any past row breaks the chain from that row on and :meth:`Ledger.verify`
names it. The first entry (``train``) records the model the ledger starts from.

An entry and the IDs it deleted are written in one transaction, so the ledger holds a
whole entry or nothing; the ``deleted`` table says which request deleted each ID.
Triggers refuse updates and deletes of entries through SQLite (a determined editor can
drop them, which the chain then exposes).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from expunge.errors import ExpungeError

LEDGER_FORMAT = "expunge-ledger"
SCHEMA_VERSION = 1
GENESIS = "0" * 64

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (
    seq INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    method TEXT NOT NULL,
    forget_hash TEXT NOT NULL,
    forget_count INTEGER NOT NULL,
    model_before TEXT,
    model_after TEXT NOT NULL,
    hyperparameters TEXT NOT NULL,
    cost TEXT NOT NULL,
    audit TEXT,
    prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL
);
CREATE TABLE deleted (id INTEGER PRIMARY KEY, request_id TEXT NOT NULL);
CREATE TRIGGER entries_append_only_update BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'the deletion ledger is append-only'); END;
CREATE TRIGGER entries_append_only_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'the deletion ledger is append-only'); END;
"""

KINDS = ("train", "exact", "approximate")


def ids_hash(ids: Iterable[int]) -> str:
    """sha256 of the sorted IDs (what the ledger stores instead of the IDs' records)."""
    return hashlib.sha256(json.dumps(sorted(int(i) for i in ids)).encode()).hexdigest()


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    request_id: str
    time: str
    kind: str
    method: str
    forget_hash: str
    forget_count: int
    model_before: str | None
    model_after: str
    hyperparameters: dict[str, Any]
    cost: dict[str, Any]
    audit: dict[str, Any] | None
    prev_hash: str
    entry_hash: str

    def computed_hash(self) -> str:
        """The hash this entry should carry: sha256 of every other field, canonical JSON."""
        fields = asdict(self)
        fields.pop("entry_hash")
        return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_bad: int | None = None  # seq of the first row whose hash or link is wrong
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"ledger intact: {self.entries} entries, hash chain verified"
        return f"ledger broken at entry {self.first_bad}: {self.reason}"


class Ledger:
    """An open deletion ledger. Use :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, connection: sqlite3.Connection):
        self.path = path
        self._db = connection

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | Path) -> Ledger:
        path = Path(path)
        if path.exists():
            raise ExpungeError(f"{path} exists already: open it instead of creating a ledger over it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        db = _connect(tmp)
        db.executescript(_SCHEMA)
        db.executemany("INSERT INTO meta VALUES (?, ?)",
                       [("format", LEDGER_FORMAT), ("schema", str(SCHEMA_VERSION)), ("created", _now())])
        db.close()
        os.replace(tmp, path)  # a ledger appears whole or not at all
        return cls(path, _connect(path))

    @classmethod
    def open(cls, path: str | Path) -> Ledger:
        path = Path(path)
        if not path.is_file():
            raise ExpungeError(f"no deletion ledger at {path}")
        try:
            db = _connect(path)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError:
            raise ExpungeError(f"{path} is not an expunge ledger (not an SQLite file with a ledger in it)") from None
        if meta.get("format") != LEDGER_FORMAT:
            raise ExpungeError(f"{path} is not an expunge ledger (format {meta.get('format')!r})")
        if int(meta.get("schema", 0)) > SCHEMA_VERSION:
            raise ExpungeError(f"{path} was written by a newer expunge (ledger schema {meta['schema']}, this "
                               f"version reads up to {SCHEMA_VERSION}): upgrade expunge")
        return cls(path, db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def entries(self) -> list[LedgerEntry]:
        rows = self._db.execute("SELECT * FROM entries ORDER BY seq").fetchall()
        return [_entry(row) for row in rows]

    def last(self) -> LedgerEntry | None:
        row = self._db.execute("SELECT * FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else _entry(row)

    def find(self, request_id: str) -> LedgerEntry | None:
        row = self._db.execute("SELECT * FROM entries WHERE request_id = ?", (request_id,)).fetchone()
        return None if row is None else _entry(row)

    def deleted_by(self, ids: Sequence[int]) -> dict[int, str]:
        """``id -> request_id`` for those of ``ids`` some request already deleted."""
        found: dict[int, str] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for i, request in self._db.execute(f"SELECT id, request_id FROM deleted WHERE id IN ({marks})", chunk):
                found[int(i)] = request
        return found

    def deleted_ids(self) -> list[int]:
        return [int(i) for (i,) in self._db.execute("SELECT id FROM deleted ORDER BY id")]

    # ------------------------------------------------------------------ writing
    def append(self, request_id: str, kind: str, method: str, ids: Sequence[int], model_before: str | None,
               model_after: str, hyperparameters: dict[str, Any] | None = None, cost: dict[str, Any] | None = None,
               audit: dict[str, Any] | None = None, before_commit: Any = None) -> LedgerEntry:
        """Append one entry and mark ``ids`` deleted, in one transaction.

        Refused (nothing written) when ``request_id`` is already in the ledger, when the
        ledger's last model is not ``model_before`` (the model changed since the request
        was computed), or when an ID was already deleted. ``before_commit``: called inside
        the transaction just before it commits (crash tests).
        """
        if kind not in KINDS:
            raise ExpungeError(f"unknown ledger entry kind {kind!r}; valid: {', '.join(KINDS)}")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if self.find(request_id) is not None:
                raise ExpungeError(f"request {request_id!r} is already in the ledger")
            last = self.last()
            if (last.model_after if last is not None else None) != model_before:
                raise ExpungeError("the model changed while this request was being served (another request was "
                                   "served meanwhile): send the request again")
            already = self.deleted_by(ids)
            if already:
                first = sorted(already)[:5]
                raise ExpungeError(f"IDs {first} were already deleted by request {already[first[0]]!r}")
            entry = LedgerEntry(
                seq=(last.seq + 1) if last is not None else 0, request_id=request_id, time=_now(), kind=kind,
                method=method, forget_hash=ids_hash(ids), forget_count=len(ids), model_before=model_before,
                model_after=model_after, hyperparameters=dict(hyperparameters or {}), cost=dict(cost or {}),
                audit=audit, prev_hash=last.entry_hash if last is not None else GENESIS, entry_hash="")
            entry = LedgerEntry(**{**asdict(entry), "entry_hash": entry.computed_hash()})
            db.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _row(entry))
            db.executemany("INSERT INTO deleted VALUES (?, ?)", [(int(i), request_id) for i in ids])
            if before_commit is not None:
                before_commit()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return entry

    # ------------------------------------------------------------------ checking
    def verify(self) -> Verification:
        """Recompute the chain; the first row whose hash, link or sequence is wrong, if any."""
        entries = self.entries()
        previous = GENESIS
        for position, entry in enumerate(entries):
            if entry.seq != position:
                return Verification(False, len(entries), entry.seq, f"sequence number {entry.seq} where {position} "
                                    "was expected (a row was deleted or inserted)")
            if entry.prev_hash != previous:
                return Verification(False, len(entries), entry.seq, "its link to the previous entry does not match "
                                    "(the previous row was edited, or rows were reordered)")
            if entry.computed_hash() != entry.entry_hash:
                return Verification(False, len(entries), entry.seq, f"its content does not match its hash (request "
                                    f"{entry.request_id!r} was edited)")
            previous = entry.entry_hash
        counted = self._db.execute("SELECT COUNT(*) FROM deleted").fetchone()[0]
        claimed = sum(e.forget_count for e in entries if e.kind != "train")
        if counted != claimed:
            return Verification(False, len(entries), entries[-1].seq if entries else None,
                                f"the deleted-ID table holds {counted} IDs but the entries account for {claimed}")
        return Verification(True, len(entries))


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
    db.execute("PRAGMA synchronous=FULL")
    return db


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _row(entry: LedgerEntry) -> tuple:
    return (entry.seq, entry.request_id, entry.time, entry.kind, entry.method, entry.forget_hash, entry.forget_count,
            entry.model_before, entry.model_after, _canonical(entry.hyperparameters), _canonical(entry.cost),
            None if entry.audit is None else _canonical(entry.audit), entry.prev_hash, entry.entry_hash)


def _entry(row: tuple) -> LedgerEntry:
    (seq, request_id, time, kind, method, forget_hash, forget_count, before, after, hyperparameters, cost, audit,
     prev_hash, entry_hash) = row
    return LedgerEntry(int(seq), request_id, time, kind, method, forget_hash, int(forget_count), before, after,
                       json.loads(hyperparameters), json.loads(cost), None if audit is None else json.loads(audit),
                       prev_hash, entry_hash)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
