"""The pointer selector: picks k in-context demonstrations out of K candidates.

Parameter names and shapes follow docs/study.md, "Checkpoints" so that a
checkpoint trained by the existing study loads strictly:

    input_proj.weight                      [h, d]   (absent when d == h)
    cross_attn_layers.{i}.in_proj_weight   [3h, h]
    cross_attn_layers.{i}.in_proj_bias     [3h]
    cross_attn_layers.{i}.out_proj.weight  [h, h]
    cross_attn_layers.{i}.out_proj.bias    [h]
    attn_norms.{i}.weight / .bias          [h]
    query_proj.weight, cand_proj.weight    [h, h]   (no bias)
    query_update_gate.weight [h, 2h], .bias [h]   (gate generation only)

Two generations of the study's selector (docs/study.md, "Checkpoints"), chosen by `query_update`:

    q = P_in x_q,  C = P_in X_c                         # (B, h), (B, K, h)
    q <- LayerNorm_i(q + Attn_i(q, C, C))  for each layer i
    gate: s = normalize(W_q dropout(q)),  c_j = normalize(W_c dropout(C_j))
    none: s = normalize(dropout(W_q q)),  c_j = normalize(dropout(W_c C_j))
    per step t (`pointer_logprobs`, `advance`: the one pointer step every decoder uses):
                 logit_j = <s, c_j> / TEMPERATURE, chosen j masked with -inf, log-softmax
                 pick a_t (argmax, sample, or teacher-forced label)
                 gate: g = sigmoid(W_g [s; c_a] + b_g),  s <- normalize(g * s + (1 - g) * c_a)
                 none: s unchanged (greedy selection = top-k of one cosine ranking)

Every method works on whole batches; each step is a handful of batched tensor
ops. `select(..., cand_index=...)` also projects each shared pool item once rather than
once per query that holds it (bench_selector.py measures both).

Notes against the existing study's code: chosen candidates get -inf (the study
used -100, whose probability e^-110 is zero in float32 at temperature 1 but
not at high sampling temperatures); dropout sits where each generation put it
(eval mode is the same either way); the
attention is computed algebraically from the same MultiheadAttention weights
(see `cross_attend`), equal to torch's forward to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from icl_kit.core.errors import KitError

TEMPERATURE = 0.1  # cosine -> logit scale; a constant of the architecture, not a parameter
INIT_NOISE_STD = 0.01  # query_proj/cand_proj start at identity + N(0, 0.01)
MODES = ("greedy", "sample")
QUERY_UPDATES = ("gate", "none")  # the gated state update (from 2025-12-29), none (the seed report's checkpoints)
QUERY_CHUNK = 64  # queries per block in select(); larger blocks spill the cache


class PointerSelector(nn.Module):
    """Cross-attention pointer network, with (`gate`) or without (`none`) a query-state update."""

    def __init__(
        self,
        input_dim: int = 512,
        hidden_dim: int = 256,
        num_layers: int = 1,
        num_heads: int = 1,
        dropout: float = 0.1,
        query_update: str = "gate",
    ) -> None:
        super().__init__()
        if query_update not in QUERY_UPDATES:
            raise KitError(f"query_update={query_update!r} is unknown; use one of {QUERY_UPDATES}.")
        if min(input_dim, hidden_dim, num_layers, num_heads) < 1 or hidden_dim % num_heads:
            raise KitError(
                f"Selector dims input_dim={input_dim}, hidden_dim={hidden_dim}, num_layers={num_layers}, "
                f"num_heads={num_heads} are invalid; all must be >= 1 and num_heads must divide hidden_dim."
            )
        self.input_dim, self.hidden_dim = input_dim, hidden_dim
        self.num_layers, self.num_heads, self.dropout_p = num_layers, num_heads, dropout
        self.query_update = query_update
        h = hidden_dim
        self.input_proj = nn.Linear(input_dim, h, bias=False) if input_dim != h else None
        self.cross_attn_layers = nn.ModuleList(
            nn.MultiheadAttention(h, num_heads, batch_first=True) for _ in range(num_layers)
        )
        self.attn_norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(num_layers))
        self.query_proj = nn.Linear(h, h, bias=False)
        self.cand_proj = nn.Linear(h, h, bias=False)
        self.query_update_gate = nn.Linear(2 * h, h) if query_update == "gate" else None
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier input_proj and gate (zero gate bias); near-identity query/cand projections."""
        if self.input_proj is not None:
            nn.init.xavier_uniform_(self.input_proj.weight)
        with torch.no_grad():
            for proj in (self.query_proj, self.cand_proj):
                nn.init.eye_(proj.weight)
                proj.weight.add_(torch.randn_like(proj.weight) * INIT_NOISE_STD)
        if self.query_update_gate is not None:
            nn.init.xavier_uniform_(self.query_update_gate.weight)
            nn.init.zeros_(self.query_update_gate.bias)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (the `selector` params section): `PointerSelector(**config())`."""
        return {
            "input_dim": self.input_dim,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "dropout": self.dropout_p,
            "query_update": self.query_update,
        }

    # ------------------------------------------------------------------ pieces
    def _project(self, proj: nn.Linear, x: Tensor) -> Tensor:
        """normalize(W dropout(x)) (gate) or normalize(dropout(W x)) (none): where each generation drops out."""
        out = proj(self.dropout(x)) if self.query_update == "gate" else self.dropout(proj(x))
        return F.normalize(out, dim=-1)

    def project_candidates(self, cand_emb: Tensor) -> tuple[Tensor, Tensor]:
        """Per-candidate work: values v = P_in x (..., h) and unit keys c = `_project`(W_c, v)."""
        values = self.input_proj(cand_emb) if self.input_proj is not None else cand_emb
        return values, self._project(self.cand_proj, values)

    def encode_query(self, query_emb: Tensor, values: Tensor) -> Tensor:
        """Initial query state s = `_project`(W_q, attended q). (B, d), (B, K, h) -> (B, h)"""
        q = self.input_proj(query_emb) if self.input_proj is not None else query_emb  # (B, h)
        return self._project(self.query_proj, self.cross_attend(q, values))

    def cross_attend(self, x: Tensor, values: Tensor) -> Tensor:
        """x <- LayerNorm_i(x + MHA_i(x, V, V)) per layer, computed without the K keys/values.

        Same result as nn.MultiheadAttention (one query, no attention dropout), but in
        O(K h) per head instead of O(K h^2): with q' = W_q x + b_q per head,
          q'.(W_k v_j + b_k) = (W_k^T q').v_j + const   (const cancels in the softmax)
          sum_j a_j (W_v v_j + b_v) = W_v (sum_j a_j v_j) + b_v   (sum_j a_j = 1)
        x (B, h), values (B, K, h) -> (B, h)
        """
        bsz, h = x.shape
        nh, hd = self.num_heads, h // self.num_heads
        for attn, norm in zip(self.cross_attn_layers, self.attn_norms, strict=True):
            w_q, w_k, w_v = attn.in_proj_weight.chunk(3)  # each (h, h)
            b_q, _, b_v = attn.in_proj_bias.chunk(3)
            q = F.linear(x, w_q, b_q).view(bsz, nh, hd) / math.sqrt(hd)  # (B, nh, hd)
            u = torch.einsum("bnd,ndh->bnh", q, w_k.view(nh, hd, h))  # (B, nh, h)
            a = torch.softmax(torch.einsum("bnh,bkh->bnk", u, values), dim=-1)  # (B, nh, K)
            ctx = torch.einsum("bnk,bkh->bnh", a, values)  # (B, nh, h)
            heads = torch.einsum("bnh,ndh->bnd", ctx, w_v.view(nh, hd, h)) + b_v.view(nh, hd)
            x = norm(x + attn.out_proj(heads.reshape(bsz, h)))
        return x

    def encode(self, query_emb: Tensor, cand_emb: Tensor) -> tuple[Tensor, Tensor]:
        """Initial query state s (B, h) and candidate keys c (B, K, h), both unit-norm."""
        values, keys = self.project_candidates(cand_emb)
        return self.encode_query(query_emb, values), keys

    # ------------------------------------------------------- the pointer step
    # Every decoder (greedy, sampling, teacher forcing, beam search, the trainer's groups) runs
    # these two functions. S stands for any extra per-query axes: none, beams (W) or a group (G).
    @staticmethod
    def pointer_logprobs(state: Tensor, keys: Tensor, chosen: Tensor, temperature: float = 1.0) -> Tensor:
        """log softmax_j(cos(s, c_j) / TEMPERATURE / temperature), chosen j at -inf.

        state (B, *S, h) and keys (B, K, h) unit-norm, chosen bool (B, *S, K) -> (B, *S, K)
        """
        logits = torch.einsum("b...h,bkh->b...k", state, keys) / TEMPERATURE
        return torch.log_softmax(logits.masked_fill(chosen, float("-inf")) / temperature, dim=-1)

    def advance(self, state: Tensor, keys: Tensor, chosen: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Mark pick idx (B, *S) as chosen and update the state with its key c = keys[b, idx].

        gate: s <- normalize(g * s + (1 - g) * c),  g = sigmoid(W_g [s; c] + b_g);  none: s unchanged.
        -> state (B, *S, h), chosen (B, *S, K)
        """
        chosen = chosen.scatter(-1, idx.unsqueeze(-1), True)
        if self.query_update_gate is None:
            return state, chosen
        n_b, h = keys.shape[0], keys.shape[-1]
        flat = idx.reshape(n_b, -1, 1).expand(-1, -1, h)  # (B, prod(S), h)
        picked = keys.gather(1, flat).view(*idx.shape, h)  # (B, *S, h)
        g = torch.sigmoid(self.query_update_gate(torch.cat([state, picked], dim=-1)))
        return F.normalize(g * state + (1 - g) * picked, dim=-1), chosen

    # -------------------------------------------------------------- selection
    @torch.no_grad()
    def select(
        self,
        query_emb: Tensor,
        cand_emb: Tensor,
        k: int,
        mode: str = "greedy",
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        cand_index: Tensor | None = None,
    ) -> Tensor:
        """Pick k distinct candidate positions per query (the one selection entry point). -> LongTensor (B, k)

        query_emb (B, d) and cand_emb (B, K, d): each query's own candidates. Or, with `cand_index` (B, K), a
        LongTensor of rows of one shared pool cand_emb (N, d): each pool row is projected once rather than once
        per query holding it, with the same picks as `select(query_emb, cand_emb[cand_index], ...)`; eval mode
        only (in train mode dropout would be shared by every query holding the same row).
        greedy: argmax each step (`temperature` ignored); shot k is the prefix of shot k+1.
        sample: draw from softmax(logits / temperature) with `generator`.
        """
        _check_decoding(mode, temperature)
        if cand_index is None:
            self._check_inputs(query_emb, cand_emb)
            self._check_k(k, cand_emb.shape[1])

            def encode(rows: slice) -> tuple[Tensor, Tensor]:
                return self.encode(query_emb[rows], cand_emb[rows])
        else:
            if self.training:
                raise KitError("select with cand_index (a shared pool) needs eval mode; call selector.eval() or "
                               "pass each query's candidates cand_emb[cand_index].")
            self._check_index(query_emb, cand_emb, cand_index)
            self._check_k(k, cand_index.shape[1])
            pool_values, pool_keys = self.project_candidates(cand_emb)  # (N, h) each

            def encode(rows: slice) -> tuple[Tensor, Tensor]:
                flat, shape = cand_index[rows].reshape(-1), (*cand_index[rows].shape, -1)
                state = self.encode_query(query_emb[rows], pool_values.index_select(0, flat).view(shape))
                return state, pool_keys.index_select(0, flat).view(shape)  # (b, h), (b, K, h)
        out = [self._decode(*encode(rows), k, mode, temperature, generator) for rows in _chunks(query_emb.shape[0])]
        return torch.cat(out) if out else torch.zeros(0, k, dtype=torch.long)

    def _decode(
        self,
        state: Tensor,
        keys: Tensor,
        k: int,
        mode: str,
        temperature: float,
        generator: torch.Generator | None,
    ) -> Tensor:
        """k steps of pick, mask, update from state (B, h) over keys (B, K, h). -> (B, k)"""
        chosen = torch.zeros(keys.shape[:2], dtype=torch.bool, device=keys.device)
        picks = []
        for _ in range(k):
            if mode == "greedy":  # argmax of the log-probs = argmax of the logits (ties -> lowest index)
                idx = self.pointer_logprobs(state, keys, chosen).argmax(dim=-1)
            else:
                probs = self.pointer_logprobs(state, keys, chosen, temperature).exp()
                idx = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            picks.append(idx)
            state, chosen = self.advance(state, keys, chosen, idx)
        return torch.stack(picks, dim=1)

    def step_logprobs(
        self, query_emb: Tensor, cand_emb: Tensor, sequences: Tensor, temperature: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Teacher-forced per-step log-probs and entropies (differentiable). -> (B, k), (B, k)

        logp[b, t] = log softmax(logits_t / temperature)[a_t], with a_1..a_{t-1} masked;
        entropy[b, t] = -sum_j p_j log p_j over the candidates still available.
        """
        _check_temperature(temperature)
        self._check_inputs(query_emb, cand_emb)
        self._check_sequences(sequences, cand_emb.shape[1], query_emb.shape[0])
        state, keys = self.encode(query_emb, cand_emb)
        return forced_logprobs(self.teacher_forcing(state, keys, sequences, temperature))

    def teacher_forcing(self, state: Tensor, keys: Tensor, sequences: Tensor,
                        temperature: float = 1.0) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """The kit's one teacher-forcing loop (`step_logprobs`, the trainer's groups, SFT's losses).

        Along sequences (B, *S, L) from state (B, *S, h) over keys (B, K, h), per pick t: (the log-softmax over
        the candidates (B, *S, K), the candidates chosen before t (B, *S, K), the pick a_t (B, *S)); chosen
        entries of the log-softmax are -inf. S: none, or a group of G sequences sharing the query's keys.
        """
        chosen = torch.zeros((*sequences.shape[:-1], keys.shape[1]), dtype=torch.bool, device=keys.device)
        for t in range(sequences.shape[-1]):
            idx = sequences[..., t]
            yield self.pointer_logprobs(state, keys, chosen, temperature), chosen, idx
            state, chosen = self.advance(state, keys, chosen, idx)

    def sequence_logprob(self, query_emb: Tensor, cand_emb: Tensor, sequences: Tensor) -> Tensor:
        """log p(a_1..a_k | q, C) = sum_t log p(a_t | q, C, a_<t) at temperature 1. -> (B,)"""
        return self.step_logprobs(query_emb, cand_emb, sequences)[0].sum(dim=1)

    @torch.no_grad()
    def beam_search(
        self, query_emb: Tensor, cand_emb: Tensor, k: int, beam_size: int
    ) -> tuple[Tensor, Tensor]:
        """The beam_size most probable length-k sequences found by beam search.

        -> sequences (B, beam, k) and their summed log-probs (B, beam), best first.
        beam_size must be <= K so every returned beam is a real, repeat-free sequence.
        """
        self._check_inputs(query_emb, cand_emb)
        n_cand = cand_emb.shape[1]
        self._check_k(k, n_cand)
        if not 1 <= beam_size <= n_cand:
            raise KitError(f"beam_size={beam_size} must be between 1 and the number of candidates ({n_cand}).")
        state, keys = self.encode(query_emb, cand_emb)
        bsz, h = state.shape
        state = state.unsqueeze(1).expand(bsz, beam_size, h)  # (B, W, h)
        chosen = torch.zeros(bsz, beam_size, n_cand, dtype=torch.bool, device=keys.device)
        score = torch.full((bsz, beam_size), float("-inf"), device=keys.device)
        score[:, 0] = 0.0  # all beams start identical: expand only the first
        seqs = torch.zeros(bsz, beam_size, 0, dtype=torch.long, device=keys.device)
        rows = torch.arange(bsz, device=keys.device).unsqueeze(1)  # (B, 1)
        for _ in range(k):
            logp = self.pointer_logprobs(state, keys, chosen)  # (B, W, K)
            total = (score.unsqueeze(2) + logp).reshape(bsz, beam_size * n_cand)
            score, flat = total.topk(beam_size, dim=1)  # (B, W)
            parent, idx = flat // n_cand, flat % n_cand
            seqs = torch.cat([seqs[rows, parent], idx.unsqueeze(2)], dim=2)
            state, chosen = self.advance(state[rows, parent], keys, chosen[rows, parent], idx)
        return seqs, score

    # --------------------------------------------------------------- checks
    def _check_inputs(self, query_emb: Tensor, cand_emb: Tensor) -> None:
        d = self.input_dim
        if query_emb.dim() != 2 or cand_emb.dim() != 3 or query_emb.shape[-1] != d \
                or cand_emb.shape[-1] != d or cand_emb.shape[0] != query_emb.shape[0]:
            raise KitError(
                f"Selector inputs must be query_emb [B, {d}] and cand_emb [B, K, {d}]; got "
                f"{list(query_emb.shape)} and {list(cand_emb.shape)}."
            )

    def _check_index(self, query_emb: Tensor, pool_emb: Tensor, cand_index: Tensor) -> None:
        d, bsz, n_pool = self.input_dim, query_emb.shape[0], pool_emb.shape[0]
        if query_emb.dim() != 2 or pool_emb.dim() != 2 or query_emb.shape[-1] != d or pool_emb.shape[-1] != d:
            raise KitError(
                f"Selector inputs must be query_emb [B, {d}] and pool_emb [N, {d}]; got "
                f"{list(query_emb.shape)} and {list(pool_emb.shape)}."
            )
        if cand_index.dim() != 2 or cand_index.shape[0] != bsz or cand_index.dtype != torch.long:
            raise KitError(f"cand_index must be a LongTensor [{bsz}, K]; got {cand_index.dtype} "
                           f"{list(cand_index.shape)}.")
        if cand_index.numel() and (cand_index.min() < 0 or cand_index.max() >= n_pool):
            raise KitError(f"cand_index holds rows outside 0..{n_pool - 1} of pool_emb.")

    @staticmethod
    def _check_k(k: int, n_cand: int) -> None:
        if not 1 <= k <= n_cand:
            raise KitError(f"k={k} ICDs cannot be chosen from {n_cand} candidates; use 1 <= k <= {n_cand}.")

    @staticmethod
    def _check_sequences(sequences: Tensor, n_cand: int, bsz: int) -> None:
        if sequences.dim() != 2 or sequences.dtype != torch.long or sequences.shape[0] != bsz:
            raise KitError(f"sequences must be a LongTensor [{bsz}, k]; got {sequences.dtype} "
                           f"{list(sequences.shape)}.")
        if sequences.numel() and (sequences.min() < 0 or sequences.max() >= n_cand):
            raise KitError(f"sequences hold positions outside 0..{n_cand - 1}; they index the candidates.")
        srt = sequences.sort(dim=1).values
        if (srt[:, 1:] == srt[:, :-1]).any():
            raise KitError("sequences repeat a candidate within a row; a selection never repeats.")


def forced_logprobs(steps: Iterable[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Per-pick log-probs and entropies (B, *S, L) each from `PointerSelector.teacher_forcing`'s steps."""
    logps, ents = [], []
    for logp_all, chosen, idx in steps:
        logps.append(logp_all.gather(-1, idx.unsqueeze(-1)).squeeze(-1))
        ents.append(step_entropy(logp_all, chosen))
    return torch.stack(logps, dim=-1), torch.stack(ents, dim=-1)


def step_entropy(logp: Tensor, chosen: Tensor) -> Tensor:
    """-sum_j p_j log p_j over the candidates still available. (..., K), (..., K) -> (...)

    The masked -inf entries are zeroed first, so neither the value nor its gradient is NaN.
    """
    safe = logp.masked_fill(chosen, 0.0)
    return -(safe.exp() * safe).masked_fill(chosen, 0.0).sum(dim=-1)


def _chunks(n: int) -> list[slice]:
    """Row blocks of QUERY_CHUNK: keeps the (b, K, h) working set in cache (~2x faster than one block)."""
    return [slice(i, min(i + QUERY_CHUNK, n)) for i in range(0, n, QUERY_CHUNK)]


def _check_decoding(mode: str, temperature: float) -> None:
    if mode not in MODES:
        raise KitError(f"Selection mode {mode!r} is unknown; use one of {MODES}.")
    _check_temperature(temperature)


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise KitError(f"temperature={temperature} must be > 0.")
