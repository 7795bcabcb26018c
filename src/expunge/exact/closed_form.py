"""Closed-form exact heads: ridge regression on frozen features, deletion by a Woodbury down-date.

A ridge head on features ``X`` (one row per training example, with a bias column) and
targets ``Y`` (one-hot labels for classification, the targets for regression) has the
weights ``W = A^-1 X^T Y`` with ``A = X^T X + l2 P``, where ``P`` is the identity on the
feature weights and zero on the bias (the bias is not regularised, as in scikit-learn's
``Ridge``). Deleting examples with feature rows ``U`` and targets ``Y_U`` changes the
sufficient statistics to ``X^T X - U^T U`` and ``X^T Y - U^T Y_U``; the inverse follows
from the Woodbury identity

    (A - U^T U)^-1 = A^-1 + A^-1 U^T (I - U A^-1 U^T)^-1 U A^-1

so deletion costs a ``k x k`` solve for ``k`` deleted examples, needs no gradient and
no pass over the retained data, and gives the weights a refit on the retained examples
would give (to floating-point rounding; the tests hold it to 1e-5). This is the
analytic route to exact unlearning of linear heads on frozen features (Guo et al.,
"Certified Data Removal from Machine Learning Models", ICML 2020, section 3, for the
exact ridge case; the "analytic unlearning" line of work, e.g. ACU).

What "exact" covers: the **head**. A :class:`ClosedFormModel` computes features with a
frozen backbone; if that backbone was trained on examples that may later be deleted, it
still holds their influence and nothing here removes it. Use a backbone that never saw
deletable data (pretrained on public data, or random features).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from expunge.data.base import ArrayDataset
from expunge.errors import ExpungeError, unknown_name
from expunge.training.population import Population, as_inputs

TASKS = ("classification", "regression")
# The Woodbury down-date subtracts nearly equal quantities when the deleted rows carry
# most of the information (deleting almost all data, or a weak l2), and then loses far more
# accuracy than a refit. Two guards, both cheap next to the down-date itself:
# - the capacitance matrix C = I - U A^-1 U^T has eigenvalues in (0, 1]; rounding errors of
#   O(eps) in its O(1) entries grow by 1 / its smallest eigenvalue, so above this the
#   down-date is not tried;
WOODBURY_MAX_AMPLIFICATION = 1e8
# - after the down-date, the residual of the normal equations (A_new W - X^T Y, and
#   A_new A_new^-1 z - z for a fixed probe z) relative to |A_new| |solution| must stay
#   below this: a Cholesky refit gives ~1e-17..1e-16 (measured), so the down-date is kept
#   only while its backward error is within ~1000x of a refit's, and its forward error
#   (at most the condition number of A_new times the backward error) with it.
WOODBURY_MAX_RESIDUAL = 1e-13

UPDATES = ("fit", "woodbury", "statistics")


# ------------------------------------------------------------------------- checks ---
def _ids_tensor(ids: torch.Tensor | list[int] | range, what: str) -> torch.Tensor:
    ids = torch.as_tensor(list(ids) if isinstance(ids, range) else ids)
    if ids.numel() == 0:
        return torch.empty(0, dtype=torch.int64)
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ExpungeError(f"{what} must be integer example IDs, got a {ids.dtype} tensor")
    return ids.to(torch.int64).reshape(-1).cpu()


def _first(values: torch.Tensor, limit: int = 5) -> list[int]:
    return values[:limit].tolist()


def _duplicates(ids: torch.Tensor) -> torch.Tensor:
    values, counts = torch.unique(ids, return_counts=True)
    return values[counts > 1]


def _check_l2(l2: float) -> float:
    l2 = float(l2)
    if not (l2 > 0.0) or l2 == float("inf"):
        raise ExpungeError(f"l2 must be a positive finite number (got {l2}): ridge needs it to keep A invertible")
    return l2


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise unknown_name("task for a closed-form head", task, TASKS)
    return task


def _check_features(features: torch.Tensor, what: str = "features") -> torch.Tensor:
    features = torch.as_tensor(features)
    if features.dim() != 2:
        raise ExpungeError(f"{what} must be a 2-D tensor [examples, width], got shape {list(features.shape)}")
    if not features.is_floating_point():
        features = features.to(torch.float64)
    if not bool(torch.isfinite(features).all()):
        raise ExpungeError(f"{what} contain NaN or infinite values: check the backbone's outputs")
    return features


def _target_matrix(targets: torch.Tensor, n: int, task: str, num_classes: int | None) -> tuple[torch.Tensor, int | None]:
    """Targets as a float64 matrix ``[n, outputs]`` (one-hot for classification)."""
    targets = torch.as_tensor(targets).cpu()
    if targets.shape[0] != n:
        raise ExpungeError(f"features have {n} rows but targets have {targets.shape[0]}")
    if task == "classification":
        if targets.dim() != 1 or targets.is_floating_point():
            raise ExpungeError(f"classification targets must be integer labels [N], got {targets.dtype} "
                               f"of shape {list(targets.shape)}")
        if num_classes is None:
            num_classes = int(targets.max()) + 1
        if int(num_classes) < 2:
            raise ExpungeError(f"a classifier needs at least 2 classes (got num_classes={num_classes})")
        if int(targets.min()) < 0 or int(targets.max()) >= num_classes:
            raise ExpungeError(f"labels must lie in [0, {num_classes}) (got {int(targets.min())} to "
                               f"{int(targets.max())}): pass the right num_classes")
        return torch.nn.functional.one_hot(targets.to(torch.int64), int(num_classes)).to(torch.float64), int(num_classes)
    if targets.dim() == 1:
        targets = targets.unsqueeze(1)
    if targets.dim() != 2:
        raise ExpungeError(f"regression targets must be [N] or [N, outputs], got shape {list(targets.shape)}")
    targets = targets.to(torch.float64)
    if not bool(torch.isfinite(targets).all()):
        raise ExpungeError("regression targets contain NaN or infinite values")
    return targets, None


def _design(features: torch.Tensor) -> torch.Tensor:
    """Features as float64 with a trailing bias column of ones."""
    features = features.detach().to(device="cpu", dtype=torch.float64)
    return torch.cat([features, torch.ones(features.shape[0], 1, dtype=torch.float64)], dim=1)


def _penalty(width: int, l2: float) -> torch.Tensor:
    """``l2 P``: ``l2`` on the feature weights, 0 on the bias (the last column)."""
    diagonal = torch.full((width,), l2, dtype=torch.float64)
    diagonal[-1] = 0.0
    return torch.diag(diagonal)


def _inverse(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of a symmetric positive definite matrix (batched), via Cholesky."""
    factor, info = torch.linalg.cholesky_ex(matrix)
    if bool((info != 0).any()):
        raise ExpungeError("the regularised Gram matrix is not positive definite: the features are degenerate "
                           "(NaN-free but numerically singular); raise l2")
    return torch.cholesky_inverse(factor)


# ---------------------------------------------------------------------- the head ---
@dataclass(frozen=True, eq=False)
class RidgeHead:
    """A ridge classifier (one-hot targets, scores as logits) or regressor on fixed features.

    Everything is float64 on the CPU. ``a_inv``: ``(X^T X + l2 P)^-1`` ``[p, p]`` with
    ``p = width + 1`` (bias last, not regularised); ``gram``: ``X^T X``; ``xty``:
    ``X^T Y`` ``[p, outputs]``; ``weights``: ``a_inv @ xty``; ``design`` / ``targets``:
    the feature rows (with the bias column) and target rows of the examples the head is
    fit on now, in the order of ``ids`` (int64 training-set IDs); ``deleted_ids``: IDs
    deleted so far (IDs only: a deleted example's features and target are dropped, so the
    head holds no row of a deleted example); ``update``: how the current state was
    computed (``"fit"``, ``"woodbury"`` down-date, or ``"statistics"``: a refit from
    ``gram - U^T U``, used when the down-date would be ill-conditioned or when more
    examples are deleted at once than the head has parameters per output, where the refit
    is cheaper). Objects are never changed: :meth:`delete` returns a new head.

    The rows of the current training examples are kept because a down-date needs the
    deleted examples' features; the fallback refit needs only the sufficient statistics.

    >>> head = RidgeHead.fit(torch.randn(50, 3), torch.arange(50) % 2, torch.arange(50), num_classes=2)
    >>> smaller = head.delete([0, 1])
    >>> refit = RidgeHead.fit(head.design[2:, :3].clone(), torch.arange(2, 50) % 2, torch.arange(2, 50), num_classes=2)
    >>> bool(torch.allclose(smaller.weights, refit.weights, atol=1e-10)), smaller.update
    (True, 'woodbury')
    """

    task: str
    num_classes: int | None
    l2: float
    a_inv: torch.Tensor
    gram: torch.Tensor
    xty: torch.Tensor
    weights: torch.Tensor
    design: torch.Tensor
    targets: torch.Tensor
    ids: torch.Tensor
    deleted_ids: torch.Tensor
    update: str = "fit"

    # construction -------------------------------------------------------------------
    @classmethod
    def fit(cls, features: torch.Tensor, targets: torch.Tensor, ids: torch.Tensor | list[int],
            task: str = "classification", num_classes: int | None = None, l2: float = 1.0) -> RidgeHead:
        """Fit on ``features [N, d]`` and ``targets`` (labels ``[N]`` or regression targets ``[N]`` / ``[N, m]``).

        ``ids``: the examples' training-set IDs ``[N]``, unique; deletion names examples by
        them. ``num_classes``: default ``max(label) + 1``. ``l2``: the ridge penalty on the
        feature weights (> 0; the bias is not penalised).
        """
        task, l2 = _check_task(task), _check_l2(l2)
        features = _check_features(features)
        n = features.shape[0]
        if n == 0:
            raise ExpungeError("a ridge head needs at least one training example")
        ids = _ids_tensor(ids, "ids")
        if ids.numel() != n:
            raise ExpungeError(f"features have {n} rows but {ids.numel()} ids were given: one ID per example")
        repeated = _duplicates(ids)
        if repeated.numel():
            raise ExpungeError(f"ids {_first(repeated)} appear more than once: each training example needs its own ID")
        target_rows, num_classes = _target_matrix(targets, n, task, num_classes)
        design = _design(features)
        gram = design.T @ design
        xty = design.T @ target_rows
        a_inv = _inverse(gram + _penalty(design.shape[1], l2))
        return cls(task, num_classes, l2, a_inv, gram, xty, a_inv @ xty, design, target_rows, ids,
                   torch.empty(0, dtype=torch.int64), "fit")

    # properties ---------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Feature width ``d`` (without the bias)."""
        return int(self.design.shape[1]) - 1

    @property
    def outputs(self) -> int:
        return int(self.weights.shape[1])

    def __len__(self) -> int:
        """Examples the head is fit on now."""
        return int(self.ids.numel())

    def __repr__(self) -> str:
        return (f"RidgeHead(task={self.task!r}, examples={len(self)}, deleted={self.deleted_ids.numel()}, "
                f"width={self.width}, outputs={self.outputs}, l2={self.l2}, update={self.update!r})")

    # deletion -----------------------------------------------------------------------
    def positions(self, ids: torch.Tensor | list[int]) -> torch.Tensor:
        """Rows of ``ids`` among the current training examples; unknown, deleted or repeated IDs are an error."""
        ids = _ids_tensor(ids, "ids to delete")
        repeated = _duplicates(ids)
        if repeated.numel():
            raise ExpungeError(f"ids {_first(repeated)} appear more than once in this request: name each example once")
        order = torch.argsort(self.ids)
        sorted_ids = self.ids[order]
        where = torch.searchsorted(sorted_ids, ids).clamp(max=max(len(self) - 1, 0))
        found = sorted_ids[where] == ids if len(self) else torch.zeros_like(ids, dtype=torch.bool)
        if not bool(found.all()):
            missing = ids[~found]
            before = torch.isin(missing, self.deleted_ids)
            if bool(before.any()):
                raise ExpungeError(f"ids {_first(missing[before])} were already deleted: drop them from the request")
            raise ExpungeError(f"ids {_first(missing)} were never in the training set of this head "
                               f"({len(self)} examples, IDs {int(self.ids.min())} to {int(self.ids.max())})")
        return order[where]

    def delete(self, ids: torch.Tensor | list[int]) -> RidgeHead:
        """The head fit without ``ids``: a Woodbury down-date (or a refit from statistics), no gradients.

        Returns a new head whose ``update`` says which path ran; this head is unchanged.
        """
        ids = _ids_tensor(ids, "ids to delete")
        if ids.numel() == 0:
            raise ExpungeError("no ids to delete: name at least one training example")
        rows = self.positions(ids)
        if rows.numel() >= len(self):
            raise ExpungeError(f"deleting these {rows.numel()} ids would delete every example the head is fit on: "
                               "nothing would be left to fit")
        deleted_rows, deleted_targets = self.design[rows], self.targets[rows]
        gram = self.gram - deleted_rows.T @ deleted_rows
        xty = self.xty - deleted_rows.T @ deleted_targets
        a_inv, update = self._woodbury(deleted_rows, gram, xty), "woodbury"
        if a_inv is None:
            a_inv, update = _inverse(gram + _penalty(gram.shape[0], self.l2)), "statistics"
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[rows] = False
        kept = torch.nonzero(keep).flatten()  # index_select copies, and is faster than boolean indexing
        return RidgeHead(self.task, self.num_classes, self.l2, a_inv, gram, xty, a_inv @ xty,
                         self.design.index_select(0, kept), self.targets.index_select(0, kept),
                         self.ids.index_select(0, kept), torch.cat([self.deleted_ids, ids]), update)

    def _woodbury(self, deleted_rows: torch.Tensor, gram: torch.Tensor, xty: torch.Tensor) -> torch.Tensor | None:
        """``(A - U^T U)^-1`` by the Woodbury identity, or ``None`` when that would be inaccurate or slower.

        ``gram`` / ``xty``: the down-dated statistics, used to check the result's residual.
        """
        if deleted_rows.shape[0] > deleted_rows.shape[1]:
            return None  # a k x k solve with k > p costs more than refitting the p x p system
        left = deleted_rows @ self.a_inv  # U A^-1  [k, p]
        capacitance = torch.eye(deleted_rows.shape[0], dtype=torch.float64) - left @ deleted_rows.T
        capacitance = 0.5 * (capacitance + capacitance.T)
        smallest = float(torch.linalg.eigvalsh(capacitance).min())
        if not smallest * WOODBURY_MAX_AMPLIFICATION > 1.0:  # also catches NaN
            return None
        a_inv = self.a_inv + left.T @ torch.linalg.solve(capacitance, left)
        a_inv = 0.5 * (a_inv + a_inv.T)
        system = gram + _penalty(gram.shape[0], self.l2)
        probe = torch.randn(gram.shape[0], 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        solution = torch.cat([a_inv @ xty, a_inv @ probe], dim=1)
        residual = (system @ solution - torch.cat([xty, probe], dim=1)).abs().max()
        scale = system.abs().max() * solution.abs().max()
        if not float(residual) <= WOODBURY_MAX_RESIDUAL * float(scale):
            return None
        return a_inv

    # use ----------------------------------------------------------------------------
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Scores ``[N, outputs]`` (logits for classification, ``[N, 1]`` for one regression target).

        Computed in float64, returned in the features' floating dtype.
        """
        features = _check_features(features)
        if features.shape[1] != self.width:
            raise ExpungeError(f"features have width {features.shape[1]} but the head was fit on width {self.width}")
        out = _design(features) @ self.weights
        return out.to(device=features.device, dtype=features.dtype)

    # storage ------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything that defines the head as named tensors (for safetensors; no pickle)."""
        own = {
            "a_inv": self.a_inv, "gram": self.gram, "xty": self.xty, "weights": self.weights,
            "design": self.design, "targets": self.targets, "ids": self.ids, "deleted_ids": self.deleted_ids,
        }
        # copies, packed: safetensors needs contiguous tensors, and the head must not change through them
        return {name: t.clone(memory_format=torch.contiguous_format) for name, t in own.items()} | {
            "l2": torch.tensor(self.l2, dtype=torch.float64),
            "task": torch.tensor(TASKS.index(self.task), dtype=torch.int64),
            "num_classes": torch.tensor(-1 if self.num_classes is None else self.num_classes, dtype=torch.int64),
            "update": torch.tensor(UPDATES.index(self.update), dtype=torch.int64),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> RidgeHead:
        """The head :meth:`tensors` described."""
        missing = sorted(set(cls._tensor_names()) - set(tensors))
        if missing:
            raise ExpungeError(f"these tensors do not describe a ridge head: {missing} missing")
        t = {k: tensors[k].detach().cpu().contiguous() for k in cls._tensor_names()}
        code = {name: int(t[name]) for name in ("task", "num_classes", "update")}
        if not (0 <= code["task"] < len(TASKS) and 0 <= code["update"] < len(UPDATES)):
            raise ExpungeError(f"these tensors do not describe a ridge head: task/update codes {code} out of range")
        p = t["design"].shape[1]
        n = t["design"].shape[0]
        shapes_ok = (t["a_inv"].shape == (p, p) and t["gram"].shape == (p, p) and t["xty"].shape[0] == p
                     and t["weights"].shape == t["xty"].shape and t["targets"].shape == (n, t["xty"].shape[1])
                     and t["ids"].shape == (n,))
        if not shapes_ok:
            raise ExpungeError("these tensors do not describe a ridge head: their shapes disagree")
        return cls(TASKS[code["task"]], None if code["num_classes"] < 0 else code["num_classes"], float(t["l2"]),
                   t["a_inv"].to(torch.float64), t["gram"].to(torch.float64), t["xty"].to(torch.float64),
                   t["weights"].to(torch.float64), t["design"].to(torch.float64), t["targets"].to(torch.float64),
                   t["ids"].to(torch.int64), t["deleted_ids"].to(torch.int64), UPDATES[code["update"]])

    @staticmethod
    def _tensor_names() -> tuple[str, ...]:
        return ("a_inv", "gram", "xty", "weights", "design", "targets", "ids", "deleted_ids", "l2", "task",
                "num_classes", "update")

    def content_hash(self) -> str:
        """sha256 (hex) over the tensors' names, dtypes, shapes and bytes, in a fixed order."""
        h = hashlib.sha256()
        tensors = self.tensors()
        for name in sorted(tensors):
            t = tensors[name].detach().cpu().contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()


# ------------------------------------------------------- a backbone with a ridge head ---
@dataclass(frozen=True, eq=False)
class ClosedFormModel:
    """A frozen feature extractor (a user's ``nn.Module`` or a built-in architecture) with a :class:`RidgeHead`.

    Features are the output of the named submodule ``layer`` of the backbone, or by
    default the input of its last ``nn.Linear`` (the penultimate features), computed in
    eval mode without gradients, in chunks, by
    :meth:`expunge.training.population.Population.activations`.

    **The guarantee, honestly:** :meth:`forget` is exact for the head: its weights equal
    a ridge head refit on the features of the remaining examples (to floating-point
    rounding). The backbone is never changed. If the backbone was trained on examples that
    may need deleting, it still carries their influence after :meth:`forget` and the model
    as a whole is *not* what training without them would give. Use a backbone that never
    saw deletable data: pretrained on public data, or random (untrained) features.

    >>> from expunge.data import load_dataset
    >>> split = load_dataset("gaussians", n_train=200, n_test=50, dim=8, num_classes=3)
    >>> torch.manual_seed(0) and None
    >>> backbone = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 3))  # random features
    >>> model = ClosedFormModel.fit(backbone, split.train, l2=1.0)
    >>> smaller = model.forget([0, 1, 2])
    >>> len(smaller.head), smaller.head.update
    (197, 'woodbury')
    """

    backbone: Population
    layer: str
    inputs_of: bool
    head: RidgeHead
    chunk: int = 4096

    @classmethod
    def fit(cls, module: nn.Module | Population, data: ArrayDataset, layer: str | None = None, l2: float = 1.0,
            ids: torch.Tensor | list[int] | None = None, chunk: int = 4096) -> ClosedFormModel:
        """Fit a ridge head on the backbone's features of ``data``.

        ``module``: the frozen backbone (copied, never changed), or a population of one.
        ``layer``: qualified name of the submodule whose output is the feature (e.g.
        ``"fc1"``, ``"features.2"``); default: the input of the last ``nn.Linear``.
        ``ids``: which examples of ``data`` to fit on (default all). ``l2``: ridge penalty.
        """
        if isinstance(module, Population):
            if len(module) != 1:
                raise ExpungeError(f"a closed-form model needs one backbone, got a population of {len(module)}: "
                                   "pick a member with population.select([i]) or use fit_heads for a population")
            backbone = module
        elif isinstance(module, nn.Module):
            backbone = Population.from_module(module)
        else:
            raise ExpungeError(f"the backbone must be an nn.Module or a Population, got {type(module).__name__}")
        if data.task not in TASKS:
            raise ExpungeError(f"closed-form heads fit classification or regression data, not {data.task!r}")
        if layer is None:
            layer, inputs_of = backbone.head_name(), True
        else:
            names = [name for name, _ in backbone.template.named_modules() if name]
            if layer not in names:
                raise unknown_name("layer", layer, names)
            inputs_of = False
        if ids is not None:
            data = data.subset(data.positions(ids))
        model = cls(backbone, layer, inputs_of, None, chunk)  # type: ignore[arg-type]
        head = RidgeHead.fit(model.features(data.inputs), data.y, data.ids, data.task, data.num_classes, l2)
        object.__setattr__(model, "head", head)
        return model

    def features(self, inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The backbone's features ``[N, d]`` for model inputs ``[N, ...]``."""
        found = self.backbone.activations(as_inputs(inputs), [self.layer], self.chunk, inputs_of=self.inputs_of)
        return found[self.layer][0]

    def forget(self, ids: torch.Tensor | list[int]) -> ClosedFormModel:
        """This model with the examples ``ids`` deleted from the head (exact for the head; see the class note)."""
        return ClosedFormModel(self.backbone, self.layer, self.inputs_of, self.head.delete(ids), self.chunk)

    def predict(self, inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Outputs ``[N, outputs]``: class scores (logits) or regression predictions."""
        return self.head.predict(self.features(inputs))

    def save(self, path: str | Path) -> None:
        """One safetensors file: the backbone's weights, the head's tensors, the layer in its metadata."""
        from safetensors.torch import save_file

        if self.backbone.spec is None:
            raise ExpungeError("only a built-in backbone can be saved to a file (a user nn.Module cannot be rebuilt "
                               "without pickle): keep the ClosedFormModel object, or use a built-in architecture")
        tensors = {f"head.{k}": v.contiguous() for k, v in self.head.tensors().items()}
        tensors |= {f"backbone.params.{k}": v[0].detach().cpu().contiguous() for k, v in self.backbone.params.items()}
        tensors |= {f"backbone.buffers.{k}": v[0].detach().cpu().contiguous() for k, v in self.backbone.buffers.items()}
        meta = {"expunge": json.dumps({"kind": "closed_form", "format": 1, "layer": self.layer,
                                       "inputs_of": self.inputs_of, "spec": self.backbone.spec.to_json(),
                                       "seed": self.backbone.seeds[0]}, sort_keys=True)}
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> ClosedFormModel:
        """Read a file written by :meth:`save` (safetensors: nothing is unpickled)."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        from expunge.models.registry import ModelSpec, build_model

        try:
            with safe_open(str(path), "pt") as handle:
                meta = json.loads((handle.metadata() or {})["expunge"])
            tensors = load_file(str(path))
        except Exception as error:  # noqa: BLE001 - any unreadable file gets one line
            raise ExpungeError(f"{path} is not an expunge closed-form model file ({type(error).__name__})") from None
        if meta.get("kind") != "closed_form":
            raise ExpungeError(f"{path} is not an expunge closed-form model file")
        spec = ModelSpec.from_json(meta["spec"])
        module = build_model(spec)
        state = {k[len("backbone.params."):]: v for k, v in tensors.items() if k.startswith("backbone.params.")}
        state |= {k[len("backbone.buffers."):]: v for k, v in tensors.items() if k.startswith("backbone.buffers.")}
        module.load_state_dict(state)
        backbone = Population.from_module(module, meta["seed"])
        backbone.spec = spec
        head = RidgeHead.from_tensors({k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")})
        return cls(backbone, meta["layer"], meta["inputs_of"], head)

    def accuracy(self, data: ArrayDataset) -> float:
        """Accuracy in percent on classification ``data``."""
        if self.head.task != "classification" or data.task != "classification":
            raise ExpungeError("accuracy needs a classifier and classification data; use predict for regression")
        predicted = self.predict(data.inputs).argmax(1).cpu()
        return float((predicted == data.y.cpu()).double().mean() * 100.0)


# ------------------------------------------------------------- a population of heads ---
@dataclass(frozen=True, eq=False)
class RidgeHeads:
    """K ridge heads at once (one per population member): ``weights [K, p, outputs]``, bias last."""

    task: str
    num_classes: int | None
    l2: float
    weights: torch.Tensor

    def __len__(self) -> int:
        return int(self.weights.shape[0])

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Per-member outputs ``[K, N, outputs]`` for shared ``[N, d]`` or per-member ``[K, N, d]`` features."""
        features = torch.as_tensor(features)
        if features.dim() == 2:
            features = features.unsqueeze(0).expand(len(self), -1, -1)
        width = self.weights.shape[1] - 1
        if features.dim() != 3 or features.shape[0] != len(self) or features.shape[2] != width:
            raise ExpungeError(f"features must be [N, {width}] or [{len(self)}, N, {width}], "
                               f"got {list(features.shape)}")
        weights = self.weights.to(features.device)
        out = features.to(torch.float64) @ weights[:, :-1] + weights[:, -1:]
        return out.to(features.dtype if features.is_floating_point() else torch.float32)

    def member(self, i: int) -> torch.Tensor:
        """Member ``i``'s weights ``[p, outputs]``."""
        return self.weights[i]


def fit_heads(features: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor, task: str = "classification",
              num_classes: int | None = None, l2: float = 1.0) -> RidgeHeads:
    """Fit K ridge heads, member ``k`` on the examples where ``masks[k]`` is True (for audits).

    ``features``: ``[K, N, d]`` (each member's own backbone) or ``[N, d]`` (shared);
    ``targets``: ``[N]`` labels or regression targets; ``masks``: bool ``[K, N]``. The
    Gram matrices are formed member by member (memory stays ``O(N d)``); the K
    regularised systems are solved as one batched Cholesky solve. Member ``k`` equals
    :meth:`RidgeHead.fit` on its kept rows.
    """
    task, l2 = _check_task(task), _check_l2(l2)
    masks = torch.as_tensor(masks)
    if masks.dtype != torch.bool or masks.dim() != 2:
        raise ExpungeError(f"masks must be bool [K members, N examples], got {masks.dtype} {list(masks.shape)}")
    k, n = masks.shape
    features = torch.as_tensor(features)
    shared = features.dim() == 2
    if features.dim() not in (2, 3) or features.shape[-2] != n or (not shared and features.shape[0] != k):
        raise ExpungeError(f"features must be [{k}, {n}, d] or [{n}, d] to match masks [{k}, {n}], "
                           f"got {list(features.shape)}")
    empty = torch.nonzero(~masks.any(1)).flatten()
    if empty.numel():
        raise ExpungeError(f"members {_first(empty)} keep no examples: every member needs at least one")
    target_rows, num_classes = _target_matrix(targets, n, task, num_classes)
    p = features.shape[-1] + 1
    grams = torch.empty(k, p, p, dtype=torch.float64)
    xtys = torch.empty(k, p, target_rows.shape[1], dtype=torch.float64)
    for member in range(k):
        rows = _design(_check_features(features if shared else features[member]))[masks[member].cpu()]
        grams[member] = rows.T @ rows
        xtys[member] = rows.T @ target_rows[masks[member].cpu()]
    factor, info = torch.linalg.cholesky_ex(grams + _penalty(p, l2))
    if bool((info != 0).any()):
        raise ExpungeError("a member's regularised Gram matrix is not positive definite: raise l2")
    return RidgeHeads(task, num_classes, l2, torch.cholesky_solve(xtys, factor))
