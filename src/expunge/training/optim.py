"""Optimisers over stacked population parameters.

Plain ``torch.optim`` would work on stacked tensors (SGD and Adam are element-wise), but
members must also be able to *skip* a step (a member whose epoch has fewer batches, a
member that diverged) without their momentum or Adam step count moving, so each member
behaves exactly as if trained alone. This optimiser keeps per-member step counts and
applies every update through a per-member ``active`` mask.

It also guards against divergence: a member whose loss or gradient becomes NaN or
infinite is frozen at its last finite parameters and reported in :attr:`diverged`.
"""
from __future__ import annotations

import torch

from expunge.errors import ExpungeError

Params = dict[str, torch.Tensor]


class PopulationOptimizer:
    """SGD (momentum, Nesterov), Adam or AdamW on ``[K, ...]`` parameters.

    ``params`` must be leaf tensors with ``requires_grad=True``; they are updated in
    place. ``update_masks`` (name -> 0/1 tensor broadcastable to the parameter) restrict
    updates to some weights, per member (SalUn's saliency mask). ``weight_decay`` is an
    L2 term for SGD/Adam and decoupled for AdamW.
    """

    def __init__(self, params: Params, kind: str = "sgd", lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 nesterov: bool = False, update_masks: Params | None = None):
        if kind not in ("sgd", "adam", "adamw"):
            raise ExpungeError(f"unknown optimizer {kind!r}; valid: sgd, adam, adamw")
        self.params = params
        self.kind, self.lr, self.momentum, self.weight_decay = kind, lr, momentum, weight_decay
        self.betas, self.eps, self.nesterov = betas, eps, nesterov
        self.update_masks = update_masks or {}
        first = next(iter(params.values()))
        self.members = first.shape[0]
        self.steps = torch.zeros(self.members, dtype=torch.long, device=first.device)
        self.diverged = torch.zeros(self.members, dtype=torch.bool, device=first.device)
        self.state: dict[str, dict[str, torch.Tensor]] = {k: {} for k in params}

    def _shape(self, flags: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return flags.reshape(-1, *([1] * (like.dim() - 1)))

    def step(self, member_losses: torch.Tensor, active: torch.Tensor | None = None,
             lr: float | torch.Tensor | None = None) -> torch.Tensor:
        """One update from per-member losses ``[K]``; returns the mask of members updated.

        ``active`` ``[K]`` bool: members to update (others keep parameters and state).
        ``lr``: a float or a per-member ``[K]`` tensor; defaults to the constructor's.
        """
        names = list(self.params)
        grads = torch.autograd.grad(member_losses.sum(), [self.params[k] for k in names], allow_unused=True)
        with torch.no_grad():
            grads = [torch.zeros_like(self.params[k]) if g is None else g for k, g in zip(names, grads)]
            # NaN and inf propagate through sums: one reduction per tensor finds them.
            total = member_losses.detach().clone()
            for g in grads:
                total += g.flatten(1).sum(1)
            finite = torch.isfinite(total)
            wanted = torch.ones_like(finite) if active is None else active.to(finite.device)
            self.diverged |= ~finite & wanted
            go = wanted & ~self.diverged
            if not bool(go.any()):
                return go
            everyone = bool(go.all())
            self.steps += go.long()
            rate = self.lr if lr is None else lr
            if isinstance(rate, torch.Tensor) and rate.dim() == 1:
                if bool((rate == rate[0]).all()):
                    rate = float(rate[0])
            for name, grad in zip(names, grads):
                p = self.params[name]
                mask = self.update_masks.get(name)
                if mask is not None:
                    grad = grad * mask
                update = self._update(name, p, grad, go, everyone)
                if mask is not None:
                    update = update * mask
                if self.kind == "adamw" and self.weight_decay:
                    update = update + self.weight_decay * p
                scaled = update * (self._shape(rate, p) if isinstance(rate, torch.Tensor) else rate)
                if everyone:
                    p.sub_(scaled)
                else:
                    p.copy_(torch.where(self._shape(go, p), p - scaled, p))  # where: NaN * 0 is NaN
        return go

    def _update(self, name: str, p: torch.Tensor, g: torch.Tensor, go: torch.Tensor, everyone: bool) -> torch.Tensor:
        """The step direction (before the learning rate); optimiser state advances only where ``go``."""
        state = self.state[name]
        if self.weight_decay and self.kind != "adamw":
            g = g + self.weight_decay * p
        keep = None if everyone else self._shape(go, p)

        def advance(key: str, new: torch.Tensor) -> torch.Tensor:
            old = state.get(key)
            state[key] = new if (keep is None or old is None) else torch.where(keep, new, old)
            return new

        if self.kind == "sgd":
            if not self.momentum:
                return g
            old = state.get("momentum")
            buf = g.clone() if old is None else self.momentum * old + g
            if old is not None and not everyone:
                first = self._shape(self.steps == 1, p)  # a member's first step starts its buffer at g
                buf = torch.where(first, g, buf)
            if old is None and keep is not None:
                buf = buf * keep  # members not stepping keep a zero buffer until their first step
            buf = advance("momentum", buf)
            return g + self.momentum * buf if self.nesterov else buf
        b1, b2 = self.betas
        m_old = state.get("m", torch.zeros_like(p))
        v_old = state.get("v", torch.zeros_like(p))
        m = advance("m", torch.lerp(g, m_old, b1))
        v = advance("v", torch.lerp(g * g, v_old, b2))
        t = self.steps.clamp(min=1).to(p.dtype)
        m_hat = m / self._shape(1 - b1 ** t, p)
        v_hat = v / self._shape(1 - b2 ** t, p)
        return m_hat / (v_hat.sqrt() + self.eps)
