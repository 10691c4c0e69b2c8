"""The full-softmax cross-entropy of STAMP (loss_type CE): logits = h @ E^T over every item, CE, and its gradients.

With many items this is most of a training step: three [B x D x n_items] products (the logits, dL/dh = G @ E and
dL/dE = G^T @ h, with G = dL/dlogits), a softmax over the B x n_items logits and Adam over the n_items x D table.
Two things here make it cheaper without changing what is computed (fp32 throughout, every item in the softmax):

1. `matmul` runs the fp32 products through oneDNN (`torch.ops.mkldnn._linear_pointwise`, the CPU kernel that
   torch.compile uses for linear layers) instead of torch's default CPU sgemm (MKL). On the AMD EPYC these numbers
   were measured on, MKL takes its AVX2 path (about 90 GFLOP/s on one core for these shapes) and oneDNN its AVX-512
   one (about 190); on an Intel CPU MKL has AVX-512 too and the gain will be smaller (not measured). The results are
   the same fp32 sums, in another order for the long n_items reduction of dL/dh (relative differences ~1e-6).
2. `FullSoftmaxCE` is one autograd node for logits -> loss: the softmax is computed once in forward, and its
   buffer becomes dL/dlogits in place in backward. F.cross_entropy keeps the log-softmax, fills a zero NLL
   gradient and writes the log-softmax gradient: three [B, n_items] buffers instead of one.

Off CPU, in other dtypes (autocast) or without oneDNN, `matmul` is plain `a @ b`; `_linear_pointwise` is a private
op, so a torch without it falls back the same way. Use it for shapes that repeat: oneDNN builds a primitive per
new shape (STAMP's small Linear layers, whose T rows change every batch, were slower through it).
"""

from __future__ import annotations

import torch

_LINEAR = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def onednn_usable(*tensors: torch.Tensor) -> bool:
    """True where `matmul` takes the oneDNN path: 2-D float32 CPU tensors, torch built with oneDNN."""
    return (
        _LINEAR is not None
        and torch.backends.mkldnn.is_available()
        and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.dim() == 2 for t in tensors)
    )


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [M, K] @ b [K, N] -> [M, N], through oneDNN on CPU float32 (no autograd: for use under no_grad or inside
    an autograd.Function). `_linear_pointwise(x, w)` computes x @ w^T and takes w as a strided view, so b^T
    costs no copy."""
    if not onednn_usable(a, b) or torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return a @ b
    return _LINEAR(a.contiguous(), b.T, None, "none", [], "")


class FullSoftmaxCE(torch.autograd.Function):
    """mean_b CE(softmax(h_b @ E^T), target_b): the value and gradients of F.cross_entropy(h @ E.T, target), as one
    node. h [B, D], E [n_classes, D] (a view of the table is fine), target [B] class indices. Backward may run
    once (the saved softmax becomes the gradient in place).

    Forward: one softmax kernel, and the loss from it without a log-softmax pass: with m the row's largest logit
    and p_m its probability, log-sum-exp = m - log p_m, so CE = (m - logit_target) - log p_m. p_m >= 1 / n_classes,
    so its log is as exact as log-softmax's (p_target itself may underflow; it is never logged).
    Backward: dL/dlogits = (softmax - one_hot(target)) x g / B; the scalar g / B is applied to the [B, D] operands
    of the two products instead of the [B, n_classes] matrix (a pass over it saved; the same products).
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, table: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = matmul(h, table.T)  # [B, C]
        top = logits.amax(dim=1)  # [B] (amax: a tenth of max(dim)'s time, which also finds the index)
        picked = logits.gather(1, target.unsqueeze(1)).squeeze(1)  # [B]
        probs = torch.softmax(logits, dim=1)  # [B, C]
        del logits
        loss = ((top - picked) - probs.amax(dim=1).log()).mean()  # the largest probability is the top logit's
        ctx.save_for_backward(h, table, target, probs)
        ctx.used = False
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: torch.Tensor):
        if ctx.used:
            raise RuntimeError("FullSoftmaxCE's backward ran twice (retain_graph): its saved softmax is consumed")
        ctx.used = True
        h, table, target, grad = ctx.saved_tensors
        batch = grad.size(0)
        grad[torch.arange(batch, device=grad.device), target] -= 1.0  # [B, C] softmax - one_hot(target)
        scale = grad_loss / batch  # dL/dlogits = grad x scale
        grad_h = matmul(grad, table).mul_(scale) if ctx.needs_input_grad[0] else None  # [B, D]
        grad_table = None
        if ctx.needs_input_grad[1]:
            # dL/dE = grad^T @ (h x scale), computed as ((h x scale)^T @ grad)^T: oneDNN writes [D, C] fastest, and
            # one transposing copy lays it out as the table (autograd then adds the input lookups' gradient in place)
            grad_table = matmul((h * scale).T, grad).T.contiguous()  # [C, D]
        return grad_h, grad_table, None


def full_softmax_ce(h: torch.Tensor, table: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """F.cross_entropy(h @ table.T, target), computed as `FullSoftmaxCE` does."""
    return FullSoftmaxCE.apply(h, table, target)

