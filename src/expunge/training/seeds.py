"""Deterministic seed derivation.

Every random stream a member uses (initialisation, data order, a method's sampling) is
derived from that member's own seed and a purpose label, never from a global generator.
That is what makes member ``i`` of a population identical to the same member trained or
unlearned alone.
"""
from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed determined by ``parts`` (ints, strings)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded with :func:`derive_seed` of ``parts``."""
    return torch.Generator().manual_seed(derive_seed(*parts))
