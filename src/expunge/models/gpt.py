"""``gpt_tiny``: a small decoder-only transformer for populations of language models.

After GPT-2 (Radford et al., 2019): token and learned position embeddings, pre-LayerNorm
blocks of causal self-attention and a GELU MLP, a final LayerNorm and a linear head to
next-token logits ``[N, T, V]``. Sized for CPU populations (default 2 layers, d_model
64, 4 heads, context 64).

Written to run under ``torch.func.vmap`` (one computation for K members): no dropout,
no in-place operations, and attention as an explicit masked softmax.
``scaled_dot_product_attention`` gives the same numbers, but on CPU it has no vmap
batching rule in torch 2.x and falls back to a slow per-member loop with a warning.

Inputs longer than ``context`` are **refused** (one clear error), never truncated.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from expunge.errors import ExpungeError
from expunge.models.registry import register_model


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t attends to positions <= t."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n, t, d = h.shape
        q, k, v = self.qkv(h).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        future = torch.ones(t, t, dtype=torch.bool, device=h.device).triu(1)
        weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-LN transformer block: h + attn(LN(h)), then h + MLP(LN(h))."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = CausalSelfAttention(d_model, heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attention(self.norm1(h))
        return h + self.mlp(self.norm2(h))


class GPTTiny(nn.Module):
    """Token ids ``[N, T]`` (int64, T <= context) -> next-token logits ``[N, T, vocab_size]``."""

    def __init__(self, vocab_size: int, layers: int = 2, d_model: int = 64, heads: int = 4, context: int = 64):
        super().__init__()
        if d_model % heads:
            raise ExpungeError(f"gpt_tiny: d_model={d_model} must be a multiple of heads={heads}")
        self.context = context
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        for embedding in (self.token_embedding, self.position_embedding):
            nn.init.normal_(embedding.weight, std=0.02)  # GPT-2's scale; N(0, 1) would swamp the residual stream

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[-1] > self.context:
            raise ExpungeError(f"gpt_tiny: a sequence of {ids.shape[-1]} tokens is longer than its context of "
                               f"{self.context}: build the model with a larger context (expunge refuses, never truncates)")
        h = self.token_embedding(ids) + self.position_embedding.weight[: ids.shape[-1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))


@register_model("gpt_tiny", "decoder-only transformer (layers=2, d_model=64, heads=4, context=64)",
                "token ids (causal_lm)")
def gpt_tiny(input_shape: tuple[int, ...], num_outputs: int, layers: int = 2, d_model: int = 64, heads: int = 4,
             context: int = 64) -> nn.Module:
    """``input_shape`` ``(T,)``: sequence length; ``num_outputs``: the vocabulary size."""
    if len(input_shape) != 1:
        raise ExpungeError(f"gpt_tiny needs token-id inputs shaped [sequence length], got {list(input_shape)}")
    if input_shape[0] > context:
        raise ExpungeError(f"gpt_tiny: the data's sequences have {input_shape[0]} tokens, longer than context="
                           f"{context}: build it with model_kwargs={{'context': {input_shape[0]}}} or more "
                           "(expunge refuses, never truncates)")
    return GPTTiny(num_outputs, layers, d_model, heads, context)
