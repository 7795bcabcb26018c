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
    L2 term for SGD/Adam and decoupled for AdamW. ``shared_fast_path``: when every member
    steps with one rate and step count, update in place (faster; its rounding differs from
    the per-member path's in the last bit, so a member's numbers then depend on whether
    the others stepped too). Off, every step takes the per-member path.
    """

    def __init__(self, params: Params, kind: str = "sgd", lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 nesterov: bool = False, update_masks: Params | None = None, shared_fast_path: bool = True):
        if kind not in ("sgd", "adam", "adamw"):
            raise ExpungeError(f"unknown optimizer {kind!r}; valid: sgd, adam, adamw")
        self.params = params
        self.kind, self.lr, self.momentum, self.weight_decay = kind, lr, momentum, weight_decay
        self.betas, self.eps, self.nesterov = betas, eps, nesterov
        self.update_masks = update_masks or {}
        self.shared_fast_path = shared_fast_path
        first = next(iter(params.values()))
        self.members = first.shape[0]
        self.steps = torch.zeros(self.members, dtype=torch.long, device=first.device)
        self.diverged = torch.zeros(self.members, dtype=torch.bool, device=first.device)
        self.state: dict[str, dict[str, torch.Tensor]] = {k: {} for k in params}
        self._everyone = torch.ones(self.members, dtype=torch.bool, device=first.device)
        self._lockstep: int | None = 0  # the common step count while every member has stepped alike, else None

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
            finite = self._finite(member_losses.detach(), grads)
            rate = self.lr if lr is None else lr
            if isinstance(rate, torch.Tensor) and bool((rate == rate.flatten()[0]).all()):
                rate = float(rate.flatten()[0])
            if (self._lockstep is not None and not isinstance(rate, torch.Tensor) and bool(finite.all())
                    and (active is None or bool(active.all())) and not bool(self.diverged.any())):
                # Every member steps, none diverged, all at the same step count: the same update as the
                # general path below with everything true, without its bookkeeping (a dozen small tensor
                # operations per step, a tenth of a small model's step).
                self.steps += 1
                self._lockstep += 1
                if self.shared_fast_path:
                    self._uniform_step(names, grads, float(rate), self._lockstep)
                else:
                    self._masked_step(names, grads, self._everyone, rate)
                return self._everyone.clone()
            wanted = torch.ones_like(finite) if active is None else active.to(finite.device)
            self.diverged |= ~finite & wanted
            go = wanted & ~self.diverged
            if not bool(go.any()):
                return go
            self.steps += go.long()
            # Fast path: every member steps, same step count, same rate -> in-place updates.
            uniform = bool(go.all()) and not isinstance(rate, torch.Tensor) and bool((self.steps == self.steps[0]).all())
            if self.shared_fast_path and uniform:
                self._uniform_step(names, grads, float(rate), int(self.steps[0]))
            else:
                self._masked_step(names, grads, go, rate)
            level = bool((self.steps == self.steps[0]).all())
            self._lockstep = int(self.steps[0]) if level else None
        return go

    def _finite(self, losses: torch.Tensor, grads: list[torch.Tensor]) -> torch.Tensor:
        """``[K]`` bool: the member's loss and every gradient entry are finite (NaN and inf propagate through
        sums: one reduction per tensor and member finds them; for one member, one multi-tensor norm)."""
        if self.members == 1:
            norms = torch._foreach_norm(grads, 1)
            return torch.isfinite(losses + torch.stack(norms).sum())
        total = losses.clone()
        for g in grads:
            total += g.flatten(1).sum(1)
        return torch.isfinite(total)

    def _uniform_step(self, names: list[str], grads: list[torch.Tensor], rate: float, t: int) -> None:
        if not self.update_masks:
            self._foreach_step(names, grads, rate, t)
            return
        b1, b2 = self.betas
        for name, g in zip(names, grads):
            p, state = self.params[name], self.state[name]
            mask = self.update_masks.get(name)
            if mask is not None:
                g = g * mask
            if self.weight_decay and self.kind != "adamw":
                g = g.add(p, alpha=self.weight_decay)
            if self.kind == "sgd":
                if self.momentum:
                    buf = state.get("momentum")
                    if buf is None:
                        buf = state["momentum"] = g.clone()
                    else:
                        buf.mul_(self.momentum).add_(g)
                    direction = g.add(buf, alpha=self.momentum) if self.nesterov else buf
                else:
                    direction = g
                if mask is not None:
                    direction = direction * mask
                p.sub_(direction, alpha=rate)
                continue
            m = state.get("m")
            if m is None:
                m, v = state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
            v = state["v"]
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v / (1 - b2 ** t)).sqrt_().add_(self.eps)
            if self.kind == "adamw" and self.weight_decay:
                p.mul_(1 - rate * self.weight_decay) if mask is None else p.sub_(p * mask, alpha=rate * self.weight_decay)
            if mask is None:
                p.addcdiv_(m, denom, value=-rate / (1 - b1 ** t))
            else:
                p.sub_(m / denom * mask, alpha=rate / (1 - b1 ** t))

    def _foreach_step(self, names: list[str], grads: list[torch.Tensor], rate: float, t: int) -> None:
        """:meth:`_uniform_step` without update masks, as multi-tensor (``torch._foreach_*``) kernels.

        The same element-wise operations in the same order as the per-tensor loop, so the
        same numbers; one kernel launch per operation for all tensors instead of one per
        tensor (most of the optimiser's time for small models).
        """
        params = [self.params[name] for name in names]
        if self.weight_decay and self.kind != "adamw":
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        if self.kind == "sgd":
            if self.momentum:
                if "momentum" not in self.state[names[0]]:
                    buffers = [g.clone() for g in grads]
                    for name, buf in zip(names, buffers):
                        self.state[name]["momentum"] = buf
                else:
                    buffers = [self.state[name]["momentum"] for name in names]
                    torch._foreach_mul_(buffers, self.momentum)
                    torch._foreach_add_(buffers, grads)
                directions = torch._foreach_add(grads, buffers, alpha=self.momentum) if self.nesterov else buffers
            else:
                directions = grads
            torch._foreach_add_(params, directions, alpha=-rate)
            return
        b1, b2 = self.betas
        if "m" not in self.state[names[0]]:
            for name, p in zip(names, params):
                self.state[name]["m"], self.state[name]["v"] = torch.zeros_like(p), torch.zeros_like(p)
        ms = [self.state[name]["m"] for name in names]
        vs = [self.state[name]["v"] for name in names]
        torch._foreach_lerp_(ms, grads, 1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - b2)
        denominators = torch._foreach_div(vs, 1 - b2 ** t)
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, self.eps)
        if self.kind == "adamw" and self.weight_decay:
            torch._foreach_mul_(params, 1 - rate * self.weight_decay)
        torch._foreach_addcdiv_(params, ms, denominators, value=-rate / (1 - b1 ** t))

    def _masked_step(self, names: list[str], grads: list[torch.Tensor], go: torch.Tensor,
                     rate: float | torch.Tensor) -> None:
        for name, grad in zip(names, grads):
            p = self.params[name]
            mask = self.update_masks.get(name)
            if mask is not None:
                grad = grad * mask
            update = self._update(name, p, grad, go)
            if mask is not None:
                update = update * mask
            if self.kind == "adamw" and self.weight_decay:
                update = update + self.weight_decay * (p if mask is None else p * mask)
            scaled = update * (self._shape(rate, p) if isinstance(rate, torch.Tensor) else rate)
            p.copy_(torch.where(self._shape(go, p), p - scaled, p))  # where: NaN * 0 would be NaN

    def _update(self, name: str, p: torch.Tensor, g: torch.Tensor, go: torch.Tensor) -> torch.Tensor:
        """The step direction (before the learning rate); optimiser state advances only where ``go``."""
        state = self.state[name]
        if self.weight_decay and self.kind != "adamw":
            g = g + self.weight_decay * p
        keep = self._shape(go, p)

        def advance(key: str, new: torch.Tensor) -> torch.Tensor:
            old = state.get(key, torch.zeros_like(p))
            state[key] = torch.where(keep, new, old)
            return new

        if self.kind == "sgd":
            if not self.momentum:
                return g
            old = state.get("momentum", torch.zeros_like(p))
            first = self._shape(self.steps == 1, p)  # a member's first step starts its buffer at g
            buf = advance("momentum", torch.where(first, g, self.momentum * old + g))
            return g + self.momentum * buf if self.nesterov else buf
        b1, b2 = self.betas
        m = advance("m", torch.lerp(g, state.get("m", torch.zeros_like(p)), b1))
        v = advance("v", torch.lerp(g * g, state.get("v", torch.zeros_like(p)), b2))
        t = self.steps.clamp(min=1).to(p.dtype)
        m_hat = m / self._shape(1 - b1 ** t, p)
        v_hat = v / self._shape(1 - b2 ** t, p)
        return m_hat / (v_hat.sqrt() + self.eps)
