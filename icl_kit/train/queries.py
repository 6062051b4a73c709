"""The training queries: their split (train / validation by sorted id) and the table of their embeddings
and candidate pools that every batch is gathered from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from icl_kit.core.errors import KitError
from icl_kit.train.batch import Batch


@dataclass(frozen=True)
class QuerySplit:
    """Training queries by sorted question id: the first (1 − val_fraction) train, the rest validate."""

    train: list[int]
    val: list[int]



def split_queries(qids: Sequence[int], val_fraction: float, max_queries: int = 0) -> QuerySplit:
    """Sort ids, keep the first `max_queries` (0 = all), hold out the last `val_fraction` share."""
    ids = sorted(int(q) for q in qids)
    if max_queries:
        ids = ids[:max_queries]
    n_val = round(len(ids) * val_fraction)
    if len(ids) - n_val < 1:
        raise KitError(
            f"No training queries are left ({len(ids)} queries, val_fraction={val_fraction}); "
            "raise train.rollouts.max_queries or lower train.rollouts.val_fraction."
        )
    return QuerySplit(train=ids[: len(ids) - n_val], val=ids[len(ids) - n_val :])



class QueryTable:
    """Query embeddings, candidate-pool ids and pool embeddings, addressed by row.

    emb_fn(ids) -> [N, d] is `DataWorld.emb`; everything is gathered once, so a batch is two index ops.
    """

    def __init__(self, qids: Sequence[int], pools: dict[int, list[int]], emb_fn: Callable[[Any], Tensor]) -> None:
        self.qids = [int(q) for q in qids]
        self.row = {q: i for i, q in enumerate(self.qids)}
        missing = [q for q in self.qids if q not in pools]
        if missing:
            raise KitError(f"Query {missing[0]} has no candidate pool in pools.json; delete pools.json to rebuild.")
        self.pool_ids = torch.tensor([pools[q] for q in self.qids], dtype=torch.long)  # (N, K)
        uniq = torch.unique(torch.cat([torch.tensor(self.qids, dtype=torch.long), self.pool_ids.flatten()]))
        self.matrix = emb_fn(uniq.tolist()).float()  # (M, d)
        local = {int(q): i for i, q in enumerate(uniq.tolist())}
        self.q_index = torch.tensor([local[q] for q in self.qids])  # (N,)
        self.c_index = torch.tensor([[local[c] for c in row] for row in self.pool_ids.tolist()])  # (N, K)
        self._matrix_on: dict[torch.device, Tensor] = {}

    def __len__(self) -> int:
        return len(self.qids)

    def batch(self, rows: Tensor, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """Query (B, d) and candidate (B, K, d) embeddings of table rows (B,)."""
        return self.matrix[self.q_index[rows]].to(device), self.matrix[self.c_index[rows]].to(device)

    def groups_batch(self, rows: Tensor, seqs: Tensor, rewards: Tensor, mask: Tensor,
                     device: torch.device | str = "cpu") -> Batch:
        """The trainer's Batch for groups of table rows (B,); candidates stay rows of the shared matrix."""
        device = torch.device(device)
        if device not in self._matrix_on:
            self._matrix_on[device] = self.matrix.to(device)
        return Batch(self.matrix[self.q_index[rows]].to(device), self._matrix_on[device],
                     self.c_index[rows].to(device), seqs.to(device), rewards.to(device), mask.to(device))

    def icd_ids(self, rows: Tensor, seqs: Tensor) -> list[tuple[int, tuple[int, ...]]]:
        """(question id, ICD ids) per sequence. rows (B,), seqs (B, G, L) positions -> B·G keys."""
        ids = torch.gather(self.pool_ids[rows], 1, seqs.flatten(1).cpu()).view(seqs.shape)  # (B, G, L)
        return [(self.qids[int(r)], tuple(s)) for r, grp in zip(rows.tolist(), ids.tolist(), strict=True)
                for s in grp]
