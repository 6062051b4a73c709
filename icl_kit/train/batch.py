"""What one optimiser step sees: B groups of ICD sequences with their query and candidate embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Batch:
    """Selector inputs of B groups.

    q (B, d) query embeddings; candidates as rows `cand_rows` (B, K) of `emb` (M, d), so candidates
    shared by several queries of a batch (one demonstration split feeds every pool) can be
    projected once; seqs (B, G, L) pool positions; rewards (B, G); mask (B, G).
    """

    q: Tensor
    emb: Tensor
    cand_rows: Tensor
    seqs: Tensor
    rewards: Tensor
    mask: Tensor

    @classmethod
    def dense(cls, q: Tensor, c: Tensor, seqs: Tensor, rewards: Tensor, mask: Tensor) -> Batch:
        """From candidate embeddings c (B, K, d) directly (no sharing)."""
        n_b, n_k, d = c.shape
        return cls(q, c.reshape(n_b * n_k, d), torch.arange(n_b * n_k, device=c.device).view(n_b, n_k), seqs,
                   rewards, mask)

    @property
    def c(self) -> Tensor:
        """Candidate embeddings (B, K, d)."""
        return self.emb[self.cand_rows]

    def take(self, idx: Tensor) -> Batch:
        return Batch(self.q[idx], self.emb, self.cand_rows[idx], self.seqs[idx], self.rewards[idx], self.mask[idx])

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in (self.q, self.emb, self.cand_rows, self.seqs, self.rewards, self.mask)))
