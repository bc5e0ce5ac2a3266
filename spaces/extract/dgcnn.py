"""The DGCNN clause tagger of SPACES: residual gated dilated 1-D convolutions over clause vectors."""

from __future__ import annotations

import torch
from torch import nn

DILATIONS = (1, 2, 4, 8, 1, 1)
# how far one convolution reads on either side: masked clauses this many wide keep two documents apart
REACH = max(DILATIONS)


class GatedConvBlock(nn.Module):
    """x + α·LayerNorm(a ⊙ σ(g)), with [a; g] = Conv1d(x); α is learned and starts at 0 (an identity block)."""

    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, 2 * dim, kernel_size=3, dilation=dilation, padding=dilation)
        self.norm = nn.LayerNorm(dim)
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Zeroing padded clauses before the convolution makes them read as the conv's own zero padding,
        # so real clauses get the same outputs however long the batch is padded.
        h = self.conv((x * mask).transpose(1, 2)).transpose(1, 2)
        a, g = h.chunk(2, dim=-1)
        return x + self.alpha * self.norm(a * torch.sigmoid(g))


class DGCNN(nn.Module):
    """Clause vectors [B, T, D] + mask [B, T] -> keep probability per clause [B, T]."""

    def __init__(self, input_size: int, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Linear(input_size, hidden_size, bias=False)
        self.blocks = nn.ModuleList(GatedConvBlock(hidden_size, d) for d in DILATIONS)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(vectors.dtype)
        x = self.dropout(self.project(self.dropout(vectors * m)))
        for block in self.blocks:
            x = self.dropout(block(x, m))
        return torch.sigmoid(self.out(x)).squeeze(-1) * mask


def masked_bce(probs: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over real clauses only."""
    m = mask.to(probs.dtype)
    loss = nn.functional.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), labels.to(probs.dtype), reduction="none")
    return (loss * m).sum() / m.sum().clamp(min=1)
