"""How fast could a population of the MNIST-1D MLP train on this CPU? The ceiling behind the engine's FLOP/s.

``benchmarks/population.py`` reports the engine's training FLOP/s as a fraction of a large
(2048 x 2048) matmul's. This benchmark asks what that fraction could be at best, for the
same shapes (the recipe's MLP, K members, batch 128), two ways:

1. **matmuls only**: the step's batched matmuls and nothing else (per layer the forward
   product and the two backward products, ``bmm`` over K members), i.e. a training step
   whose element-wise work (bias, ReLU, loss, Adam) costs nothing. Small and skinny
   matrices (40 x 100, 100 x 10) run far below a large matmul's rate, so this is an upper
   bound on the engine's fraction that no fusion can beat;
2. **a hand-written step, eager vs ``torch.compile``**: the same MLP step (``baddbmm``,
   ReLU, cross-entropy, Adam with ``torch._foreach_*``) run eagerly and with the forward
   and the optimiser compiled (inductor fuses the element-wise kernels), interleaved in
   rounds; reports the median of per-round ratios.

Usage: ``OMP_NUM_THREADS=2 python benchmarks/engine_ceiling.py [--members 64] [--rounds 5]``.
The host is shared: quote the per-round ratios and the load printed at the end.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import torch
import torch.nn.functional as F

from expunge.training.recipe import default_recipe
from population import matmul_flops  # benchmarks/population.py (this folder is on sys.path when run)


def matmul_gflops() -> float:
    return matmul_flops() / 1e9  # the same reference as benchmarks/population.py


def layer_shapes() -> list[tuple[int, int]]:
    recipe = default_recipe("mnist1d")
    widths = [40, *recipe.model_kwargs["hidden"], 10]  # MNIST-1D: 40 inputs, 10 classes
    return list(zip(widths[:-1], widths[1:]))


def step_flops(members: int, batch: int, shapes: list[tuple[int, int]]) -> float:
    return 3 * sum(2 * members * batch * i * o for i, o in shapes)


def matmuls_only(members: int, batch: int, shapes: list[tuple[int, int]], steps: int) -> float:
    xs = [torch.randn(members, batch, i) for i, _ in shapes]
    ws = [torch.randn(members, i, o) for i, o in shapes]
    gs = [torch.randn(members, batch, o) for _, o in shapes]

    def one() -> None:
        for x, w, g in zip(xs, ws, gs):
            torch.bmm(x, w)
            torch.bmm(g, w.transpose(1, 2))
            torch.bmm(x.transpose(1, 2), g)

    for _ in range(10):
        one()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    return step_flops(members, batch, shapes) * steps / (time.perf_counter() - start) / 1e9


def make_steps(members: int, batch: int, shapes: list[tuple[int, int]]):
    torch.manual_seed(0)
    params: list[torch.Tensor] = []
    for i, o in shapes:
        params += [(torch.randn(members, i, o) * i ** -0.5).requires_grad_(), torch.zeros(members, 1, o,
                                                                                          requires_grad=True)]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    x = torch.randn(members, batch, shapes[0][0])
    y = torch.randint(0, shapes[-1][1], (members, batch))

    def forward(x, y, *ps):
        h = x
        for layer in range(len(ps) // 2):
            h = torch.baddbmm(ps[2 * layer + 1], h, ps[2 * layer])
            if layer < len(ps) // 2 - 1:
                h = torch.relu(h)
        return F.cross_entropy(h.reshape(-1, h.shape[-1]), y.reshape(-1), reduction="sum") / batch

    def adam(ps, grads, m, v):
        torch._foreach_mul_(m, 0.9)
        torch._foreach_add_(m, grads, alpha=0.1)
        torch._foreach_mul_(v, 0.999)
        torch._foreach_addcmul_(v, grads, grads, value=0.001)
        denominator = torch._foreach_sqrt(v)
        torch._foreach_add_(denominator, 1e-8)
        update = torch._foreach_div(m, denominator)
        torch._foreach_mul_(update, 1e-3)
        torch._foreach_sub_(ps, update)

    def stepper(fwd, opt):
        def step() -> None:
            loss = fwd(x, y, *params)
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                opt(params, list(grads), m, v)
        return step

    return stepper(forward, adam), stepper(torch.compile(forward), torch.compile(adam))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    shapes = layer_shapes()
    print(f"engine ceiling  {datetime.date.today()}  threads {torch.get_num_threads()}  torch {torch.__version__}  "
          f"load (1 min) at start {os.getloadavg()[0]:.2f}")
    print(f"MLP layers {shapes}, K = {args.members}, batch {args.batch}")
    eager, compiled = make_steps(args.members, args.batch, shapes)
    for _ in range(5):  # warm-up, compilation included
        eager()
        compiled()
    flops = step_flops(args.members, args.batch, shapes) * args.steps
    rows = {"big": [], "matmuls": [], "eager": [], "compiled": []}
    for r in range(args.rounds):
        rows["big"].append(matmul_gflops())
        rows["matmuls"].append(matmuls_only(args.members, args.batch, shapes, args.steps))
        for name, step in (("eager", eager), ("compiled", compiled)):
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            rows[name].append(flops / (time.perf_counter() - start) / 1e9)
        print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]:.1f} GFLOP/s" for k, v in rows.items()), flush=True)

    def share(name: str) -> float:
        return statistics.median(a / b for a, b in zip(rows[name], rows["big"]))

    print(f"matmuls only (no element-wise work): {share('matmuls'):.0%} of a 2048 matmul (median of rounds)")
    print(f"hand-written step, eager:            {share('eager'):.0%}")
    print(f"hand-written step, torch.compile:    {share('compiled'):.0%}")
    speedup = statistics.median(c / e for c, e in zip(rows["compiled"], rows["eager"]))
    print(f"torch.compile speed-up over eager: {speedup:.2f}x; load (1 min) at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
