"""A population: K models of one architecture held as stacked parameters.

Parameters and buffers are stored with a leading member dimension ``[K, ...]`` and the
architecture is run with ``torch.func.functional_call`` under ``torch.func.vmap``, so one
call evaluates every member (the PyTorch model-ensembling idiom). A user's single model
is a population of one; the code path is the same. Architectures that cannot run under
``vmap`` (e.g. BatchNorm in training mode) fall back to a loop over members, slower but
with the same results.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from expunge.errors import ExpungeError
from expunge.models.registry import ModelSpec, build_model

Params = dict[str, torch.Tensor]
Inputs = tuple[torch.Tensor, ...]


class Population:
    """K members of one architecture.

    ``params`` / ``buffers``: name -> tensor ``[K, ...]``. ``seeds``: one per member.
    ``spec``: how to rebuild the architecture (``None`` for a user module, whose
    template must then be passed to :meth:`load`). ``info``: free-form provenance.
    """

    def __init__(self, template: nn.Module, params: Params, buffers: Params, seeds: Sequence[int],
                 spec: ModelSpec | None = None, info: dict | None = None):
        self.template = _as_meta(template)
        self.params = params
        self.buffers = buffers
        self.seeds = [int(s) for s in seeds]
        self.spec = spec
        self.info = dict(info or {})
        sizes = {t.shape[0] for t in params.values()} | {t.shape[0] for t in buffers.values()}
        if sizes != {len(self.seeds)}:
            raise ExpungeError(f"population tensors have member counts {sorted(sizes)} but {len(self.seeds)} seeds")
        self._vectorized: bool | None = None

    # construction -----------------------------------------------------------------
    @classmethod
    def from_modules(cls, modules: Sequence[nn.Module], seeds: Sequence[int] | None = None,
                     spec: ModelSpec | None = None, info: dict | None = None) -> "Population":
        """Stack independent modules of one architecture into a population."""
        if not modules:
            raise ExpungeError("a population needs at least one member")
        params, buffers = stack_module_state(list(modules))
        params = {k: v.detach().clone() for k, v in params.items()}
        buffers = {k: v.detach().clone() for k, v in buffers.items()}
        seeds = list(seeds) if seeds is not None else list(range(len(modules)))
        return cls(modules[0], params, buffers, seeds, spec, info)

    @classmethod
    def from_module(cls, module: nn.Module, seed: int = 0) -> "Population":
        """A user's single model as a population of one (the module is copied, never changed)."""
        return cls.from_modules([module], [seed])

    @classmethod
    def initialize(cls, spec_or_module: ModelSpec | nn.Module, seeds: Sequence[int]) -> "Population":
        """Fresh members, member ``i`` initialised from ``seeds[i]`` alone."""
        modules = []
        for seed in seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                if isinstance(spec_or_module, ModelSpec):
                    modules.append(build_model(spec_or_module))
                else:
                    modules.append(_reinitialized(spec_or_module))
        spec = spec_or_module if isinstance(spec_or_module, ModelSpec) else None
        return cls.from_modules(modules, seeds, spec)

    # basic properties -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.seeds)

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def clone(self, info: dict | None = None) -> "Population":
        """An independent copy (tensors copied), optionally with new ``info``."""
        return Population(self.template, {k: v.detach().clone() for k, v in self.params.items()},
                          {k: v.detach().clone() for k, v in self.buffers.items()}, self.seeds, self.spec,
                          self.info if info is None else info)

    def with_params(self, params: Params, info: dict | None = None) -> "Population":
        """A population with these parameters (detached) and this population's buffers copied."""
        return Population(self.template, {k: v.detach() for k, v in params.items()},
                          {k: v.detach().clone() for k, v in self.buffers.items()}, self.seeds, self.spec,
                          self.info if info is None else info)

    def select(self, members: Sequence[int]) -> "Population":
        """The sub-population of the given member indices (copied)."""
        index = torch.as_tensor(list(members), dtype=torch.long)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise ExpungeError(f"member indices {list(members)} out of range for a population of {len(self)}")
        return Population(self.template, {k: v[index.to(v.device)].clone() for k, v in self.params.items()},
                          {k: v[index.to(v.device)].clone() for k, v in self.buffers.items()},
                          [self.seeds[i] for i in members], self.spec, self.info)

    def to(self, device: torch.device | str) -> "Population":
        return Population(self.template, {k: v.to(device) for k, v in self.params.items()},
                          {k: v.to(device) for k, v in self.buffers.items()}, self.seeds, self.spec, self.info)

    def member(self, i: int) -> nn.Module:
        """Member ``i`` as an ordinary standalone ``nn.Module`` (a copy, in eval mode)."""
        module = _materialize(self.template, self.device)
        state = {k: v[i] for k, v in self.params.items()} | {k: v[i] for k, v in self.buffers.items()}
        module.load_state_dict(state)
        return module.eval()

    def architecture(self) -> "ModelSpec | nn.Module":
        """What :meth:`initialize` needs for fresh members: the registry spec, or a member as template."""
        return self.spec if self.spec is not None else self.member(0)

    def num_parameters(self) -> int:
        """Parameters of one member."""
        return sum(v[0].numel() for v in self.params.values())

    # evaluation -------------------------------------------------------------------
    def forward(self, x: Inputs | torch.Tensor, params: Params | None = None,
                per_member_input: bool = False) -> torch.Tensor:
        """Outputs of every member.

        ``x``: the model input ``[N, ...]`` shared by all members, or ``[K, N, ...]``
        with ``per_member_input=True`` (each member gets its own minibatch); a tuple of
        such tensors for a model that takes several inputs. Returns ``[K, N, outputs]``.
        ``params`` overrides the stored parameters (for training).
        """
        params = self.params if params is None else params
        inputs = as_inputs(x)
        if len(self) == 1:  # ordinary single-model call: no vmap overhead
            own = tuple(t[0] for t in inputs) if per_member_input else inputs
            return self._call({k: v[0] for k, v in params.items()}, {k: v[0] for k, v in self.buffers.items()},
                              own).unsqueeze(0)
        if self._vectorized is None:
            self._vectorized = self._vmap_works(params, inputs, per_member_input)
        if self._vectorized:
            in_x = 0 if per_member_input else None
            return vmap(self._call, in_dims=(0, 0, in_x), randomness="different")(params, self.buffers, inputs)
        outs = []
        for i in range(len(self)):
            own = tuple(t[i] for t in inputs) if per_member_input else inputs
            outs.append(self._call({k: v[i] for k, v in params.items()}, {k: v[i] for k, v in self.buffers.items()},
                                   own))
        return torch.stack(outs)

    def bound(self, params: Params) -> "Callable[[Inputs], torch.Tensor] | None":
        """For a population of one: ``inputs -> outputs [1, N, ...]`` with ``params`` installed in a module once.

        Each call then runs the module directly, skipping the re-parametrisation that
        :meth:`forward` (``functional_call``) does on every call: the same operations, so
        the same numbers, minus a fixed cost per step that matters for small models. The
        module holds views of ``params``, so in-place optimiser updates are seen. ``None``
        for K > 1 or an architecture with tied weights (use :meth:`forward`).
        """
        if len(self) != 1 or self._tied:
            return None
        module = _materialize(self.template, self.device)
        for name, tensor in params.items():
            owner, _, leaf = name.rpartition(".")
            module.get_submodule(owner)._parameters[leaf] = tensor[0]
        for name, tensor in self.buffers.items():
            owner, _, leaf = name.rpartition(".")
            module.get_submodule(owner)._buffers[leaf] = tensor[0]
        return lambda inputs: module(*inputs).unsqueeze(0)

    @torch.no_grad()
    def predict(self, x: Inputs | torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Outputs ``[K, N, outputs]`` on shared inputs, in chunks, without gradients."""
        inputs = tuple(t.to(self.device) for t in as_inputs(x))
        n = inputs[0].shape[0]
        return torch.cat([self.forward(tuple(t[i:i + chunk] for t in inputs)) for i in range(0, n, chunk)], dim=1)

    @torch.no_grad()
    def activations(self, x: Inputs | torch.Tensor, layers: Sequence[str], chunk: int = 4096,
                    inputs_of: bool = False) -> dict[str, torch.Tensor]:
        """Outputs (or, with ``inputs_of``, inputs) of the named submodules, ``name -> [K, N, d]`` (flattened)."""
        inputs = tuple(t.to(self.device) for t in as_inputs(x))
        n = inputs[0].shape[0]
        captured: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        per_chunk: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

        def hook(name: str):
            def record(_module: nn.Module, args: tuple, output: torch.Tensor) -> None:
                value = args[0] if inputs_of else output
                per_chunk[name].append(value.detach().flatten(1))
            return record

        handles = [self.template.get_submodule(name).register_forward_hook(hook(name)) for name in layers]
        try:
            vectorized, self._vectorized = self._vectorized, False  # hooks see one member at a time
            for start in range(0, n, chunk):
                for name in layers:
                    per_chunk[name].clear()
                self.forward(tuple(t[start:start + chunk] for t in inputs))
                for name in layers:
                    captured[name].append(torch.stack(per_chunk[name]))
        finally:
            for handle in handles:
                handle.remove()
            self._vectorized = vectorized
        return {name: torch.cat(parts, dim=1) for name, parts in captured.items()}

    def head_name(self) -> str:
        """Qualified name of the architecture's last ``nn.Linear`` (the classifier head)."""
        last = [name for name, m in self.template.named_modules() if isinstance(m, nn.Linear)]
        if not last:
            raise ExpungeError("representation metrics need a model whose last layer is an nn.Linear")
        return last[-1]

    @torch.no_grad()
    def features(self, x: Inputs | torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Penultimate-layer features ``[K, N, d]``: the input of the architecture's last ``nn.Linear``."""
        head = self.head_name()
        return self.activations(x, [head], chunk, inputs_of=True)[head]

    def _call(self, params: Params, buffers: Params, inputs: Inputs) -> torch.Tensor:
        return functional_call(self.template, (params, buffers), inputs, tie_weights=self._tied)

    @property
    def _tied(self) -> bool:
        """Whether the architecture shares a tensor between modules (tied weights must be re-tied per call;
        without them, skipping that search saves a few percent of a small model's training step)."""
        tied = getattr(self, "_tied_cache", None)
        if tied is None:
            named = list(self.template.named_parameters(remove_duplicate=False))
            named += list(self.template.named_buffers(remove_duplicate=False))
            tied = self._tied_cache = len({id(t) for _, t in named}) < len(named)
        return tied

    def _vmap_works(self, params: Params, inputs: Inputs, per_member_input: bool) -> bool:
        try:
            probe = tuple(t[:, :1] if per_member_input else t[:1] for t in inputs)
            with torch.no_grad():
                vmap(self._call, in_dims=(0, 0, 0 if per_member_input else None), randomness="different")(
                    {k: v.detach() for k, v in params.items()}, self.buffers, probe)
            return True
        except Exception:  # noqa: BLE001 - any failure means: run members one by one
            return False


def as_inputs(x: Inputs | torch.Tensor) -> Inputs:
    """A model input as a tuple of tensors."""
    if isinstance(x, torch.Tensor):
        return (x,)
    return tuple(x)


def _as_meta(module: nn.Module) -> nn.Module:
    """A weightless copy of the architecture (parameters on the meta device)."""
    template = copy.deepcopy(module).to("meta")
    template.eval()
    return template


def _materialize(template: nn.Module, device: torch.device) -> nn.Module:
    return copy.deepcopy(template).to_empty(device=device)


def _reinitialized(module: nn.Module) -> nn.Module:
    """A copy of a user module with every layer's ``reset_parameters`` called."""
    fresh = copy.deepcopy(module)
    if any(p.is_meta for p in fresh.parameters()):
        fresh = fresh.to_empty(device="cpu")
    for layer in fresh.modules():
        reset = getattr(layer, "reset_parameters", None)
        if callable(reset):
            reset()
    return fresh
