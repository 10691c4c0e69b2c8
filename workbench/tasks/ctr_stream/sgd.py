"""PaddleRec's sparse optimizer rules (sparse_sgd_rule.cc), vectorised over the rows of one push.

Each rule updates gathered copies `w` [n, dim] and `state` [n, state_dim] in place; the table scatters them back.
The formulas are PaddleRec's, including its quirks:
- SparseAdaGradSGDRule keeps ONE g2sum per vector and adds the mean of the squared scaled gradient to it.
- The step uses the OLD g2sum: w -= lr * g * sqrt(initial_g2sum / (initial_g2sum + g2sum)).
- SparseAdamSGDRule does not divide the gradient by `scale` (show), unlike the AdaGrad rules.
- Weights are clipped to weight_bounds after every update and at initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.tasks.ctr_stream.config_parts import SparseSgdParam


@dataclass(frozen=True)
class SgdRule:
    """One configured rule for vectors of dimension `dim` (1 for embed_w, embedx_dim for embedx_w)."""

    param: SparseSgdParam
    dim: int

    @property
    def state_dim(self) -> int:
        """Optimizer floats stored per feature for this part (the `g2sum` columns of a saved line)."""
        if self.param.name == "SparseAdaGradSGDRule":
            return 1
        if self.param.name == "StdAdaGradSGDRule":
            return self.dim
        return 2 * self.dim + 2  # SparseAdam: m [dim], v [dim], beta1_pow, beta2_pow

    def init(self, n: int, rng: np.random.Generator, zero_init: bool) -> tuple[np.ndarray, np.ndarray]:
        """Fresh weights [n, dim] (0, or uniform in +-initial_range) and optimizer state [n, state_dim]."""
        lo, hi = self.param.weight_bounds
        if zero_init:
            w = np.zeros((n, self.dim), dtype=np.float32)
        else:
            w = (rng.random((n, self.dim), dtype=np.float32) * 2 - 1) * np.float32(self.param.initial_range)
        np.clip(w, lo, hi, out=w)
        state = np.zeros((n, self.state_dim), dtype=np.float32)
        if self.param.name == "SparseAdamSGDRule":
            state[:, 2 * self.dim] = self.param.beta1_decay_rate
            state[:, 2 * self.dim + 1] = self.param.beta2_decay_rate
        return w, state

    def update(self, w: np.ndarray, state: np.ndarray, grad: np.ndarray, scale: np.ndarray) -> None:
        """One update of n rows. grad [n, dim] is the merged push gradient; scale [n] the merged show (or 1)."""
        p = self.param
        lo, hi = p.weight_bounds
        if p.name == "SparseAdamSGDRule":
            self._adam(w, state, grad)
        else:
            # a show of 0 cannot come from the reader (each occurrence pushes show 1); guard the division anyway
            positive = scale.size == 0 or scale.min() > 0
            safe = scale.astype(np.float32, copy=False) if positive else np.where(scale > 0, scale, 1).astype(np.float32)
            g0 = np.float32(p.initial_g2sum)
            if p.name == "SparseAdaGradSGDRule":
                # per row: w -= lr * (grad / scale) * sqrt(g0 / (g0 + g2sum)); g2sum += mean((grad / scale)^2),
                # with the per-row factors computed once ([n]) instead of on [n, dim] temporaries
                step = np.float32(p.learning_rate) * np.sqrt(g0 / (g0 + state[:, 0])) / safe
                w -= grad * step[:, None]
                state[:, 0] += np.einsum("ij,ij->i", grad, grad) / (safe * safe * np.float32(self.dim))
            else:  # StdAdaGradSGDRule
                g = grad / safe[:, None]
                w -= np.float32(p.learning_rate) * g * np.sqrt(g0 / (g0 + state))
                state += g * g
        np.clip(w, lo, hi, out=w)

    def _adam(self, w: np.ndarray, state: np.ndarray, grad: np.ndarray) -> None:
        p, d = self.param, self.dim
        b1, b2 = np.float32(p.beta1_decay_rate), np.float32(p.beta2_decay_rate)
        m, v = state[:, :d], state[:, d : 2 * d]  # views: updated in place
        b1_pow, b2_pow = state[:, 2 * d : 2 * d + 1], state[:, 2 * d + 1 : 2 * d + 2]
        lr = np.float32(p.learning_rate) * np.sqrt(1 - b2_pow) / (1 - b1_pow)  # [n, 1], beta powers before decay
        m *= b1
        m += (1 - b1) * grad
        v *= b2
        v += (1 - b2) * grad * grad
        w -= lr * (m / (np.sqrt(v) + np.float32(p.ada_epsilon)))
        b1_pow *= b1
        b2_pow *= b2
