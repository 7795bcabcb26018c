"""A model folder that serves deletion requests: the model's states, its ledger and its receipts.

Layout of ``DIR``::

    expunge-model.json        what the model is (kind, dataset, data fingerprint)
    states/<sha256>.safetensors  every state the model has been in, named by the hash of its bytes
    ledger.sqlite             the deletion ledger (expunge.exact.ledger)
    receipts/<request>.json   one deletion receipt per request served

The current model is the state named by the ledger's last entry. Serving a request
writes the new state under its own hash first (a new file; nothing is overwritten), then
appends the ledger entry and the deleted IDs in one SQLite transaction, then writes the
receipt. Killed at any point, the folder's model is the old one with no entry, or the
new one with its whole entry: a state file without an entry is an unreferenced leftover
(``verify`` counts them) and the request can be sent again. A request ID already in the
ledger is never served twice: sending it again returns its receipt.

How a kind of model is loaded, saved and made to forget is a :class:`Kind` in
:data:`KINDS` (``sisa``: exact; ``closed_form``: exact; ``model``: any single model,
approximate unlearning with a registered method).
"""
from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from expunge.data.base import ArrayDataset
from expunge.errors import ExpungeError, unknown_name
from expunge.exact.closed_form import ClosedFormModel
from expunge.exact.ledger import Ledger, LedgerEntry, Verification, ids_hash
from expunge.exact.sisa import SisaModel, file_hash
from expunge.files import atomic_write, json_text

FOLDER_FORMAT = 1
META = "expunge-model.json"
LEDGER = "ledger.sqlite"
CRASH_ENV = "EXPUNGE_CRASH_AT"  # tests: SIGKILL this process at a named point of serving a request
CRASH_POINTS = ("after-state", "before-commit", "after-commit")
Progress = Callable[[int, int], None]


@dataclass
class Kind:
    """How one kind of model lives in a folder."""

    name: str
    exact: bool
    default_method: str
    load: Callable[[Path], Any]
    save: Callable[[Any, Path], None]
    forget: Callable[..., tuple[Any, dict[str, Any]]]  # (model, data, ids, method, hyperparameters, progress)
    guarantee: str


def _sisa_forget(model: SisaModel, data: ArrayDataset, ids: torch.Tensor, method: str, hyperparameters: dict,
                 progress: Progress | None) -> tuple[SisaModel, dict[str, Any]]:
    after, cost = model.forget(data, ids, progress=progress)
    return after, cost.to_json()


def _population_save(model: Any, path: Path) -> None:
    """One safetensors file: stacked parameters and buffers, spec / seeds / info in its metadata."""
    from safetensors.torch import save_file

    if model.spec is None:
        raise ExpungeError("a model folder holds built-in architectures only (a user nn.Module cannot be rebuilt "
                           "from a file without pickle); use the Python API with your module instead")
    from expunge.training.store import population_tensors

    tensors = population_tensors(model)
    meta = {"expunge": json.dumps({"kind": "model", "spec": model.spec.to_json(), "seeds": model.seeds,
                                   "info": model.info}, sort_keys=True)}
    save_file(tensors, str(path), metadata=meta)


def _population_load(path: Path) -> Any:
    from safetensors import safe_open
    from safetensors.torch import load_file

    from expunge.models.registry import ModelSpec, build_model
    from expunge.training.population import Population
    from expunge.training.store import split_population_tensors

    try:
        with safe_open(str(path), "pt") as handle:
            meta = json.loads((handle.metadata() or {})["expunge"])
        tensors = load_file(str(path))
    except Exception as error:  # noqa: BLE001 - any unreadable file gets one line
        raise ExpungeError(f"{path} is not an expunge model state ({type(error).__name__})") from None
    spec = ModelSpec.from_json(meta["spec"])
    params, buffers = split_population_tensors(tensors)
    return Population(build_model(spec), params, buffers, meta["seeds"], spec, meta["info"])


def _population_forget(model: Any, data: ArrayDataset, ids: torch.Tensor, method: str, hyperparameters: dict,
                       progress: Progress | None) -> tuple[Any, dict[str, Any]]:
    from expunge.methods.registry import unlearn_population
    from expunge.training.recipe import Recipe

    forget = torch.zeros(len(data), dtype=torch.bool)
    forget[data.positions(ids)] = True
    recipe = Recipe.from_json(model.info["recipe"]) if "recipe" in model.info else Recipe()
    unlearned, cost = unlearn_population(model, data, forget, ~forget, method, recipe, 0, **hyperparameters)
    unlearned.info = dict(model.info)
    return unlearned, cost.to_json()


def _closed_form_forget(model: ClosedFormModel, data: ArrayDataset, ids: torch.Tensor, method: str,
                        hyperparameters: dict, progress: Progress | None) -> tuple[ClosedFormModel, dict[str, Any]]:
    import time

    began = time.perf_counter()
    after = model.forget(ids)
    return after, {"example_gradients": 0.0, "ratio_to_full": 0.0, "update": after.head.update,
                   "wall_time_s": time.perf_counter() - began}


KINDS: dict[str, Kind] = {
    "sisa": Kind("sisa", True, "sisa", SisaModel.load, lambda m, p: m.save(p), _sisa_forget,
                 "exact: the model equals a SISA model trained from scratch without the deleted examples (same "
                 "seeds); only the shards that held them were retrained, from the checkpoint before their first "
                 "slice"),
    "closed_form": Kind("closed_form", True, "closed_form", ClosedFormModel.load, lambda m, p: m.save(p),
                        _closed_form_forget,
                        "exact for the ridge head: its weights equal a refit without the deleted examples (to "
                        "floating-point rounding); the frozen backbone is unchanged, so the whole model is exact "
                        "only if the backbone never saw deletable data (random features, or pretrained elsewhere)"),
    "model": Kind("model", False, "finetune", _population_load, _population_save, _population_forget,
                  "approximate: the method reduces the deleted examples' influence; it does not remove it "
                  "provably (audit it with `expunge audit` to measure how close it is to retraining)"),
}


def register_kind(kind: Kind) -> None:
    """Add a kind of model that folders can hold (e.g. the closed-form head)."""
    KINDS[kind.name] = kind


@dataclass
class Receipt:
    """What a served (or re-sent) request returns; ``data`` is the receipt file's JSON."""

    data: dict[str, Any]
    path: Path
    already_served: bool = False
    entry: LedgerEntry | None = None

    def __str__(self) -> str:
        d = self.data
        state = "already served earlier" if self.already_served else "served"
        return (f"request {d['request_id']} {state}: {d['forget']['count']} IDs deleted "
                f"({d['method']['kind']}, {d['method']['name']}); ledger entry {d['ledger']['seq']}; "
                f"receipt {self.path}")


@dataclass
class ModelFolder:
    """A folder holding a model that serves deletion requests. Use :meth:`create` or :meth:`open`."""

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ creating and opening
    @classmethod
    def create(cls, path: str | Path, model: Any, kind: str, dataset: dict[str, Any] | None = None,
               data: ArrayDataset | None = None) -> ModelFolder:
        """Start a folder from a trained ``model`` of ``kind``; the ledger's first entry records it.

        ``dataset``: ``{"name": ..., "options": {...}}`` of a built-in dataset whose train
        split the model was trained on (then ``expunge forget`` can reload it); ``data``:
        the training set itself (its fingerprint is recorded; pass it again to :meth:`forget`).
        """
        path = Path(path)
        handler = _kind(kind)
        if path.exists() and any(path.iterdir()):
            raise ExpungeError(f"{path} exists and is not empty: give a new folder for the model")
        if data is None and dataset is None:
            raise ExpungeError("a model folder needs the training set (data=) or a built-in dataset (dataset=)")
        if data is None:
            data = _load_train(dataset)  # type: ignore[arg-type]
        path.mkdir(parents=True, exist_ok=True)
        meta = {"format": FOLDER_FORMAT, "kind": kind, "dataset": dataset, "data_fingerprint": data.fingerprint(),
                "train_examples": len(data)}
        folder = cls(path, meta)
        digest = folder._write_state(handler, model)
        atomic_write(path / META, lambda tmp: tmp.write_text(json_text(meta, indent=1)))
        with Ledger.create(path / LEDGER) as ledger:
            ledger.append("train", "train", kind, [], None, digest, {}, {})
        return folder

    @classmethod
    def open(cls, path: str | Path) -> ModelFolder:
        path = Path(path)
        if not (path / META).is_file() or not (path / LEDGER).is_file():
            raise ExpungeError(f"{path} is not an expunge model folder (it needs {META} and {LEDGER}; create one "
                               "with `expunge sisa train --out DIR`)")
        try:
            meta = json.loads((path / META).read_text())
        except ValueError:
            raise ExpungeError(f"{path / META} is not valid JSON") from None
        if meta.get("format") != FOLDER_FORMAT:
            raise ExpungeError(f"{path} has model folder format {meta.get('format')!r}; this expunge reads "
                               f"{FOLDER_FORMAT}")
        _kind(meta.get("kind", "?"))
        return cls(path, meta)

    # ------------------------------------------------------------------ reading
    @property
    def kind(self) -> Kind:
        return _kind(self.meta["kind"])

    def ledger(self) -> Ledger:
        return Ledger.open(self.path / LEDGER)

    def state_path(self, digest: str) -> Path:
        return self.path / "states" / f"{digest}.safetensors"

    def current_hash(self, ledger: Ledger) -> str:
        """The ledger's last model hash, checked against the state file's bytes."""
        last = ledger.last()
        if last is None:
            raise ExpungeError(f"the ledger in {self.path} has no entries: the folder was never completed")
        state = self.state_path(last.model_after)
        if not state.is_file():
            raise ExpungeError(f"the model state the ledger names last ({last.model_after[:12]}...) is missing "
                               f"from {state.parent}: the folder was changed outside expunge")
        if file_hash(state) != last.model_after:
            raise ExpungeError(f"the model weights in {state} do not match the ledger's last hash "
                               f"({last.model_after[:12]}...): the model was changed outside expunge")
        return last.model_after

    def model(self) -> Any:
        """The current model (checked against the ledger)."""
        with self.ledger() as ledger:
            return self.kind.load(self.state_path(self.current_hash(ledger)))

    def training_data(self, data: ArrayDataset | None = None) -> ArrayDataset:
        """The training set (reloaded from the built-in dataset, or ``data`` checked by fingerprint)."""
        if data is None:
            if not self.meta.get("dataset"):
                raise ExpungeError("this folder's model was trained on the user's own data: pass it (data=...)")
            data = _load_train(self.meta["dataset"])
        if data.fingerprint() != self.meta["data_fingerprint"]:
            raise ExpungeError("this is not the training set the folder's model was trained on (its fingerprint "
                               "differs)")
        return data

    # ------------------------------------------------------------------ serving requests
    def forget(self, ids: Sequence[int] | torch.Tensor, request_id: str | None = None, method: str | None = None,
               hyperparameters: dict[str, Any] | None = None, data: ArrayDataset | None = None,
               progress: Progress | None = None) -> Receipt:
        """Serve one deletion request: delete ``ids`` from the model, record it, write its receipt.

        ``request_id``: the caller's ID for the request (default: derived from the IDs and
        method, so sending the same request twice serves it once). ``method``: for a
        ``model`` folder, the approximate method (default ``finetune``); exact kinds
        delete exactly and take no method.
        """
        kind = self.kind
        ids = _as_ids(ids)
        hyperparameters = dict(hyperparameters or {})
        if method is not None and kind.exact and method != kind.default_method:
            raise ExpungeError(f"this folder holds a {kind.name} model, which deletes exactly; --method applies to "
                               "plain models (approximate unlearning)")
        method = method or kind.default_method
        if not kind.exact:
            from expunge.methods.registry import get_method

            get_method(method)  # unknown methods fail here, with suggestions
        request_id = request_id or f"req-{method}-{ids_hash(ids.tolist())[:16]}"
        _check_request_id(request_id)
        with self.ledger() as ledger:
            served = ledger.find(request_id)
            if served is not None:
                if served.forget_hash != ids_hash(ids.tolist()):
                    raise ExpungeError(f"request {request_id!r} was already served with other IDs: a request ID "
                                       "names one request")
                return self._receipt(served, already_served=True)
            before = self.current_hash(ledger)
            train = self.training_data(data)
            _check_in_training_set(train, ids)
            already = ledger.deleted_by(ids.tolist())
            if already:
                first = sorted(already)[:5]
                raise ExpungeError(f"IDs {first} were already deleted by request {already[first[0]]!r}")
            model = kind.load(self.state_path(before))
            after_model, cost = kind.forget(model, train, ids, method, hyperparameters, progress)
            after = self._write_state(kind, after_model)
            _crash_point("after-state")
            entry = ledger.append(request_id, "exact" if kind.exact else "approximate", method, ids.tolist(), before,
                                  after, hyperparameters, cost, before_commit=lambda: _crash_point("before-commit"))
            _crash_point("after-commit")
            return self._receipt(entry)

    def _write_state(self, kind: Kind, model: Any) -> str:
        states = self.path / "states"
        states.mkdir(parents=True, exist_ok=True)
        tmp = states / f".incoming-{os.getpid()}.safetensors"
        kind.save(model, tmp)
        digest = file_hash(tmp)
        os.replace(tmp, self.state_path(digest))
        return digest

    def _receipt(self, entry: LedgerEntry, already_served: bool = False) -> Receipt:
        kind = self.kind
        data = {
            "receipt": "expunge deletion receipt", "version": 1, "request_id": entry.request_id,
            "served_at": entry.time,
            "ledger": {"file": LEDGER, "seq": entry.seq, "entry_hash": entry.entry_hash, "prev_hash": entry.prev_hash},
            "forget": {"count": entry.forget_count, "ids_sha256": entry.forget_hash},
            "model": {"kind": kind.name, "before_sha256": entry.model_before, "after_sha256": entry.model_after},
            "method": {"name": entry.method, "kind": entry.kind, "hyperparameters": entry.hyperparameters},
            "guarantee": kind.guarantee, "cost": entry.cost, "audit": entry.audit,
        }
        path = self.path / "receipts" / f"{entry.request_id}.json"
        if not path.is_file():
            atomic_write(path, lambda tmp: tmp.write_text(json_text(data, indent=1)))
        return Receipt(data, path, already_served, entry)

    # ------------------------------------------------------------------ checking
    def verify(self) -> tuple[Verification, list[str]]:
        """The ledger's chain, and findings about the folder (current model's hash, leftover states)."""
        findings: list[str] = []
        with self.ledger() as ledger:
            result = ledger.verify()
            try:
                self.current_hash(ledger)
            except ExpungeError as error:
                findings.append(str(error))
            referenced = {e.model_after for e in ledger.entries()}
        leftovers = [p.name for p in (self.path / "states").glob("*.safetensors") if p.stem not in referenced]
        if leftovers:
            findings.append(f"{len(leftovers)} state file(s) no ledger entry names (left by interrupted requests; "
                            "safe to delete)")
        return result, findings


def _kind(name: str) -> Kind:
    if name not in KINDS:
        raise unknown_name("model kind", name, KINDS)
    return KINDS[name]


def _load_train(dataset: dict[str, Any]) -> ArrayDataset:
    from expunge.data import load_dataset

    return load_dataset(dataset["name"], **dataset.get("options", {})).train


def _as_ids(ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    try:
        ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise ExpungeError("IDs must be integers") from None
    if ids.numel() == 0:
        raise ExpungeError("the deletion request names no IDs")
    values, counts = torch.unique(ids, return_counts=True)
    if bool((counts > 1).any()):
        raise ExpungeError(f"IDs {values[counts > 1][:5].tolist()} appear more than once in the request")
    return torch.sort(ids).values


def _check_in_training_set(data: ArrayDataset, ids: torch.Tensor) -> None:
    known = torch.isin(ids, data.ids)
    if not bool(known.all()):
        raise ExpungeError(f"IDs {ids[~known][:5].tolist()} were never in the training set")


def _check_request_id(request_id: str) -> None:
    if not request_id or len(request_id) > 128 or not all(c.isalnum() or c in "-_." for c in request_id) \
            or request_id.startswith("."):
        raise ExpungeError(f"request ID {request_id!r} must be 1-128 letters, digits, '-', '_' or '.'")


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def train_sisa_folder(out: str | Path, dataset: str = "mnist1d", shards: int = 4, slices: int = 1,
                      epochs: int | None = None, seed: int = 0, aggregate: str = "mean",
                      dataset_options: dict[str, Any] | None = None, device: str = "cpu",
                      progress: Progress | None = None) -> tuple[ModelFolder, SisaModel]:
    """Train a SISA model on a built-in dataset's train split and start a model folder with it.

    The recipe is the dataset's default (``epochs`` overrides its epochs); see
    :class:`~expunge.exact.sisa.SisaModel` for how shards and slices train.
    """
    from expunge.data import load_dataset
    from expunge.training.recipe import default_recipe

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExpungeError(f"{out} exists and is not an empty folder: give a new folder for the model")
    options = dict(dataset_options or {})
    split = load_dataset(dataset, **options)
    recipe = default_recipe(dataset)
    if epochs:
        recipe = recipe.with_(epochs=epochs)
    model = SisaModel.train(split.train, shards, slices, recipe=recipe, seed=seed, aggregate=aggregate, device=device,
                            progress=progress)
    folder = ModelFolder.create(out, model, "sisa",
                                dataset={"name": dataset, "options": options}, data=split.train)
    return folder, model


def fit_closed_form_folder(out: str | Path, dataset: str = "mnist1d", l2: float = 1.0, seed: int = 0,
                           model: str | None = None, dataset_options: dict[str, Any] | None = None,
                           ) -> tuple[ModelFolder, ClosedFormModel]:
    """A ridge head on random features of a built-in architecture, in a new model folder.

    The backbone is the dataset recipe's architecture (or ``model``) at its random
    initialisation from ``seed``: it learned nothing from any data, so exact deletion in
    the head is exact for the whole model. With your own backbone pretrained on public
    data, use :meth:`ClosedFormModel.fit` and :meth:`ModelFolder.create` from Python.
    """
    from expunge.data import load_dataset
    from expunge.training.engine import model_spec
    from expunge.training.population import Population
    from expunge.training.recipe import default_recipe

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExpungeError(f"{out} exists and is not an empty folder: give a new folder for the model")
    options = dict(dataset_options or {})
    train = load_dataset(dataset, **options).train
    recipe = default_recipe(dataset)
    if model:
        recipe = recipe.with_(model=model, model_kwargs={})
    backbone = Population.initialize(model_spec(recipe, train), [seed])
    fitted = ClosedFormModel.fit(backbone, train, l2=l2)
    folder = ModelFolder.create(out, fitted, "closed_form", dataset={"name": dataset, "options": options}, data=train)
    return folder, fitted
