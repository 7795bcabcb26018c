"""Per-example losses on population outputs ``[K, B, outputs]``."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def per_example_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str = "cross_entropy") -> torch.Tensor:
    """Loss of every example for every member: ``[K, B]``.

    ``targets``: ``[K, B]`` (per-member batches) or ``[B]`` (shared). Cross-entropy for
    classification labels; squared error for regression targets (single output).
    """
    if targets.dim() == 1:
        targets = targets.unsqueeze(0).expand(outputs.shape[0], -1)
    if loss == "mse":
        return (outputs.squeeze(-1) - targets.to(outputs.dtype)) ** 2
    flat = F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1), reduction="none")
    return flat.view(outputs.shape[0], outputs.shape[1])


def soft_cross_entropy(outputs: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a distribution (``[K, B, C]`` both) -> ``[K, B]``."""
    return -(target_probs * torch.log_softmax(outputs, dim=-1)).sum(-1)


def kl_to(outputs: torch.Tensor, teacher_outputs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) per example, on temperature-scaled logits -> ``[K, B]``."""
    log_student = torch.log_softmax(outputs / temperature, dim=-1)
    log_teacher = torch.log_softmax(teacher_outputs / temperature, dim=-1)
    return (log_teacher.exp() * (log_teacher - log_student)).sum(-1)
