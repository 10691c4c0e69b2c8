"""Recommenders behind one contract (RecBole's): `calculate_loss(batch)`, `predict(batch, items)`,
`full_sort_predict(batch)`.

- `STAMP`: Liu et al., KDD 2018, as RecBole 1.2.1 and the official TF code implement it (including `+ m_s` in the
  attention output, which the paper does not have). Shapes: B batch, L max history, D embedding, K candidates.
- `BPRMF`: matrix factorisation of session/user x item trained with BPR; the embedding regulariser
  (`reg_weight`, `require_pow`) lives here, as in RecBole's EmbLoss.
- `Pop`: scores every item by its training frequency; no parameters, nothing to optimise.

Item id 0 is padding everywhere. Scores are raw dot products (no sigmoid): ranking needs no calibration.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.tasks.recommendation.config import RecommendationConfig
from workbench.tasks.recommendation.data import SessionBatch
from workbench.tasks.recommendation.kernels import full_softmax_ce, matmul


class STAMP(nn.Module):
    """Short-Term Attention/Memory Priority model.

    x_t = last click, m_s = sum of the L positions' embeddings / len,
    alpha_i = w0 . sigmoid(W1 x_i + W2 x_t + W3 m_s + b_a)   (no softmax, no pad mask, i over all L positions)
    m_a = sum_i alpha_i x_i + m_s,  h_s = tanh(mlp_a(m_a)),  h_t = tanh(mlp_b(x_t)),  score(v) = (h_s * h_t) . e_v

    `pad_row="learned"` (default, RecBole 1.2.1): the PAD row starts as N(0, 0.002) like every item, is a class of
    the CE softmax and so is trained; each of the L - len pad positions adds it to m_s and the attention sum. This
    is what made RecBole's STAMP take off faster than ours (issue 14, docs/recommendation.md).
    `pad_row="zero"`: the PAD row is zero and out of the softmax, so pads add nothing (the older behaviour).
    """

    masks_seen_items = False  # sessions re-click items; RecBole does not mask history for sequential models

    def __init__(
        self, n_items: int, embedding_size: int, loss_type: str, sparse: bool = False, pad_row: str = "learned"
    ):
        super().__init__()
        if pad_row not in ("learned", "zero"):
            raise ValueError(f"pad_row must be 'learned' or 'zero', not {pad_row!r}")
        d = embedding_size
        self.loss_type = loss_type
        self.pad_row = pad_row
        # sparse=True makes lookups produce sparse gradients, so learner sparse_adam can use SparseAdam on it
        self.item_embedding = nn.Embedding(n_items, d, padding_idx=0, sparse=sparse)
        self.w1 = nn.Linear(d, d, bias=False)
        self.w2 = nn.Linear(d, d, bias=False)
        self.w3 = nn.Linear(d, d, bias=False)
        self.w0 = nn.Linear(d, 1, bias=False)
        self.b_a = nn.Parameter(torch.zeros(d))
        self.mlp_a = nn.Linear(d, d)
        self.mlp_b = nn.Linear(d, d)
        self.register_buffer("item_ids", torch.arange(1, n_items), persistent=False)  # [n_items - 1] real items
        self.register_buffer("all_ids", torch.arange(n_items), persistent=False)
        self.apply(_init_stamp)
        if pad_row == "zero":
            with torch.no_grad():
                # pads add nothing to m_s and sum(alpha_i x_i); padding_idx and the softmax over items 1.. keep
                # the row at zero
                self.item_embedding.weight[0].zero_()

    def forward(self, item_seq: torch.Tensor, item_len: torch.Tensor) -> torch.Tensor:
        """Session representation h_s * h_t: [B, D], computed on the real clicks only.

        RecBole runs every layer over the whole padded [B, L, D] block, where each of the L - len pad positions
        holds the same PAD row p. Those positions are identical inside a session, so their share is computed once
        per session and scaled by L - len: m_s = (sum_real x + (L - len) p) / len and
        m_a = sum_real alpha_i x_i + (L - len) alpha_p p + m_s. Same result; W1 and the lookups run on the T real
        clicks instead of B x L positions (most positions are pads for short sessions). With pad_row "zero" the
        pad terms are zero.
        """
        batch, width = item_seq.shape
        real = torch.arange(width, device=item_seq.device) < item_len.unsqueeze(1)  # [B, L]
        x = self.item_embedding(item_seq[real])  # [T, D] real clicks, session by session, in click order
        seg = torch.repeat_interleave(torch.arange(batch, device=x.device), item_len)  # [T] session of each click
        # [1, D] the PAD row's value. padding_idx blocks the gradient of a PAD lookup (RecBole's too), so reading
        # the row detached is the same; a lookup would add a zero-filled n_items x D gradient every step
        pad = self.item_embedding.weight[:1].detach()
        n_pad = (width - item_len).unsqueeze(1).to(x.dtype)  # [B, 1] pad positions of each session
        x_t = x[torch.cumsum(item_len, 0) - 1]  # [B, D] last click
        m_s = (x.new_zeros(batch, x.size(1)).index_add(0, seg, x) + n_pad * pad) / item_len.unsqueeze(1).to(x.dtype)
        # W2 x_t + W3 m_s + b_a is the same for every position of a session: once per session, gathered per click
        session_term = self.w2(x_t) + self.w3(m_s) + self.b_a  # [B, D]
        alpha = self.w0(torch.sigmoid(self.w1(x) + session_term[seg]))  # [T, 1]  (no softmax, as in RecBole)
        alpha_pad = self.w0(torch.sigmoid(self.w1(pad) + session_term))  # [B, 1]  every pad position's alpha
        attended = x.new_zeros(batch, x.size(1)).index_add(0, seg, alpha * x)  # [B, D]
        m_a = attended + (n_pad * alpha_pad) * pad + m_s  # (+ m_s: official code, not paper)
        h_s = torch.tanh(self.mlp_a(m_a))  # [B, D]
        h_t = torch.tanh(self.mlp_b(x_t))  # [B, D]
        return h_s * h_t

    def calculate_loss(self, batch: SessionBatch) -> torch.Tensor:
        seq_output = self.forward(batch.item_seq, batch.item_len)  # [B, D]
        if self.loss_type == "BPR":
            pos_score = (seq_output * self.item_embedding(batch.target)).sum(-1)  # [B]
            neg_score = _score(seq_output, self.item_embedding(batch.neg_items))  # [B, N]
            return bpr_loss(pos_score, neg_score)
        # "learned" (RecBole): PAD is a class of the softmax too. It is never a target, so the loss pushes its score
        # down, and that gradient is what trains the PAD row every pad position feeds into m_s and the attention.
        # "zero": softmax over real items only (PAD excluded, as in the official code's embe_dict[1:]).
        first = 0 if self.pad_row == "learned" else 1
        target = batch.target - first
        table = self.item_embedding.weight
        if not self.item_embedding.sparse and seq_output.dtype == table.dtype:
            # the same loss and gradients as F.cross_entropy(seq_output @ table.T, target), cheaper (kernels.py)
            return full_softmax_ce(seq_output, table[first:] if first else table, target)
        logits = seq_output @ self._output_embeddings(first).T  # [B, n_items - first] (sparse table, or autocast)
        return F.cross_entropy(logits.float(), target)

    def predict(self, batch: SessionBatch, items: torch.Tensor) -> torch.Tensor:
        """Scores of `items` [B, K] -> [B, K]."""
        seq_output = self.forward(batch.item_seq, batch.item_len)
        return _score(seq_output, self.item_embedding(items))

    def full_sort_predict(self, batch: SessionBatch) -> torch.Tensor:
        """Scores of every item id [B, n_items] (column 0 is PAD; the evaluator sets it to -inf)."""
        seq_output = self.forward(batch.item_seq, batch.item_len)  # [B, D]
        return matmul(seq_output, self.item_embedding.weight.T)  # [B, n_items] (oneDNN on CPU: kernels.py)

    def _output_embeddings(self, first: int) -> torch.Tensor:
        """[n_items - first, D] output embeddings of items first.. for the full softmax.

        With a sparse table this goes through a lookup so the gradient stays sparse (SparseAdam rejects dense
        ones; RecBole's STAMP crashes there). Every row gets a gradient under a full softmax anyway, so sparse
        only pays off with loss_type BPR.
        """
        if self.item_embedding.sparse:  # no padding_idx here: as an output class, PAD's row gets its gradient
            return F.embedding(self.item_ids if first else self.all_ids, self.item_embedding.weight, sparse=True)
        return self.item_embedding.weight[first:] if first else self.item_embedding.weight


class BPRMF(nn.Module):
    """BPR matrix factorisation: score(u, i) = e_u . e_i (Rendle et al. 2009; RecBole's BPR)."""

    masks_seen_items = True  # a user-item model ranks items the user has not interacted with in training

    def __init__(
        self, n_users: int, n_items: int, embedding_size: int, reg_weight: float, require_pow: bool, sparse: bool
    ):
        super().__init__()
        self.reg_weight = reg_weight
        self.require_pow = require_pow
        self.user_embedding = nn.Embedding(n_users, embedding_size, sparse=sparse)
        self.item_embedding = nn.Embedding(n_items, embedding_size, padding_idx=0, sparse=sparse)
        nn.init.xavier_normal_(self.user_embedding.weight)  # RecBole's xavier_normal_initialization
        nn.init.xavier_normal_(self.item_embedding.weight)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def calculate_loss(self, batch: SessionBatch) -> torch.Tensor:
        u = self.user_embedding(batch.user)  # [B, D]
        pos = self.item_embedding(batch.target)  # [B, D]
        neg = self.item_embedding(batch.neg_items)  # [B, N, D]
        loss = bpr_loss((u * pos).sum(-1), _score(u, neg))
        if self.reg_weight > 0:
            loss = loss + self.reg_weight * emb_loss(u, pos, neg, require_pow=self.require_pow)
        return loss

    def predict(self, batch: SessionBatch, items: torch.Tensor) -> torch.Tensor:
        return _score(self.user_embedding(batch.user), self.item_embedding(items))  # [B, K]

    def full_sort_predict(self, batch: SessionBatch) -> torch.Tensor:
        return self.user_embedding(batch.user) @ self.item_embedding.weight.T  # [B, n_items]


class Pop(nn.Module):
    """Most-popular baseline: every session gets the items ranked by training frequency."""

    masks_seen_items = False

    def __init__(self, n_items: int):
        super().__init__()
        self.register_buffer("item_count", torch.zeros(n_items))  # [n_items], saved in checkpoints

    def fit(self, item_count: torch.Tensor) -> None:
        self.item_count.copy_(item_count)
        self.item_count[0] = 0

    def predict(self, batch: SessionBatch, items: torch.Tensor) -> torch.Tensor:
        return self.item_count[items]  # [B, K]

    def full_sort_predict(self, batch: SessionBatch) -> torch.Tensor:
        return self.item_count.unsqueeze(0).expand(len(batch), -1)  # [B, n_items]


Recommender = STAMP | BPRMF | Pop


def build_model(cfg: RecommendationConfig, n_items: int, n_users: int) -> Recommender:
    sparse = cfg.learner == "sparse_adam"
    if cfg.model == "STAMP":
        return STAMP(n_items, cfg.embedding_size, cfg.loss_type, sparse=sparse)
    if cfg.model == "BPR":
        return BPRMF(n_users, n_items, cfg.embedding_size, cfg.reg_weight, cfg.require_pow, sparse=sparse)
    return Pop(n_items)


def check_state(cfg: RecommendationConfig, state: dict) -> list[str]:
    """Why a checkpoint's `model` weights do not fit `cfg`'s model (empty: they fit). No data is loaded: the
    table sizes are taken from the checkpoint; whether they fit the data is checked when the weights are loaded."""
    from workbench.runner.checkpoints import state_mismatches

    weights = state["model"]
    n_items = _rows(weights, "item_embedding.weight", _rows(weights, "item_count", 2))
    n_users = _rows(weights, "user_embedding.weight", 1)
    expected = build_model(cfg, n_items, n_users).state_dict()
    return state_mismatches(expected, weights)


def _rows(weights: dict, key: str, default: int) -> int:
    tensor = weights[key] if key in weights else None
    return int(tensor.shape[0]) if isinstance(tensor, torch.Tensor) and tensor.ndim >= 1 else default


def bpr_loss(pos_score: torch.Tensor, neg_score: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(s_pos - s_neg), averaged over the B x N pairs. pos [B], neg [B, N].

    logsigmoid instead of RecBole's log(1e-10 + sigmoid(.)): same value, no underflow for large margins.
    """
    return -F.logsigmoid(pos_score.unsqueeze(1) - neg_score).mean()


def emb_loss(*embeddings: torch.Tensor, require_pow: bool, p: int = 2) -> torch.Tensor:
    """RecBole's EmbLoss: sum ||E||_p^p / batch / p with require_pow, else sum ||E||_p / batch (batch = dim 0)."""
    batch = embeddings[-1].shape[0]
    if require_pow:
        return sum(torch.linalg.vector_norm(e, ord=p) ** p for e in embeddings) / batch / p
    return sum(torch.linalg.vector_norm(e, ord=p) for e in embeddings) / batch


def _score(query: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
    """query [B, D], item_emb [B, K, D] -> [B, K] dot products."""
    return torch.bmm(item_emb, query.unsqueeze(2)).squeeze(2)


def _init_stamp(module: nn.Module) -> None:
    """RecBole's STAMP init: embeddings N(0, 0.002); Linear weights N(0, 0.05), biases 0."""
    if isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, 0.0, 0.002)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.05)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
