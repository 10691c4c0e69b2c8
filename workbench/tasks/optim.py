"""Training helpers any task may use: optimizers (with the sparse_adam split), the learning-rate schedule,
early stopping, mixed precision and gradient clipping, RNG state for checkpoints. Torch only.

Everything stateful has `state_dict()` / `load_state_dict()` holding tensors and plain Python values, so it
fits in a checkpoint that loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

Mode = Literal["max", "min"]


# -- eager optimizers without torch._dynamo ---------------------------------------------------------------------
#
# torch.optim imports torch._dynamo the first time an optimizer steps (`step` is wrapped to mark a graph break for
# torch.compile) and the first time `add_param_group`, `zero_grad`, `state_dict` or `load_state_dict` run (wrapped
# in torch._disable_dynamo). That import is ~1 s on a quiet 2-core machine, as long as `import torch` itself, and
# every run paid it before its first step. Nothing here compiles (no task calls torch.compile), and outside a
# compiled frame both wrappers only call the function: `eager_step` makes that call itself, and
# `skip_dynamo_import` records, where torch caches the "disabled" function, that it is the function itself.
# Under torch.compile (torch._dynamo already loaded) neither changes anything. tests/tasks/test_eager_optim.py checks
# that a run's optimizers never load torch._dynamo and step exactly as `opt.step()` does.

_DYNAMO_GUARDED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def skip_dynamo_import() -> None:
    if "torch._dynamo" in sys.modules:
        return
    for name in _DYNAMO_GUARDED:
        fn = getattr(getattr(torch.optim.Optimizer, name, None), "__wrapped__", None)
        if callable(fn) and not hasattr(fn, "__dynamo_disable"):
            fn.__dynamo_disable = fn  # type: ignore[attr-defined]  # the cache torch._compile._disable_dynamo reads


def eager_step(opt: torch.optim.Optimizer) -> None:
    """`opt.step()` without its graph-break wrapper: the optimizer's own step under no_grad, which is what the wrapper
    runs for a non-differentiable optimizer. With step hooks registered (none of ours are), torch's own path."""
    graph_break = getattr(type(opt).step, "__wrapped__", None)  # torch's hooks wrapper -> graph-break wrapper -> step
    is_graph_break = getattr(getattr(graph_break, "__code__", None), "co_name", None) == "_use_grad"
    raw = getattr(graph_break, "__wrapped__", None) if is_graph_break else None
    base = sys.modules[torch.optim.Optimizer.__module__]
    hooks = (base._global_optimizer_pre_hooks, base._global_optimizer_post_hooks, opt._optimizer_step_pre_hooks, opt._optimizer_step_post_hooks)  # fmt: skip
    if raw is None or "torch._dynamo" in sys.modules or opt.defaults.get("differentiable") or any(hooks):
        opt.step()
        return
    with torch.autograd.profiler.record_function(f"Optimizer.step#{type(opt).__name__}.step"), torch.no_grad():
        raw(opt)


skip_dynamo_import()


# -- optimizers ---------------------------------------------------------------------------------------------


class OptimizerSet:
    """One or more torch optimizers stepped as one (sparse_adam = SparseAdam for sparse tables + Adam for the rest).

    `param_groups` spans all of them, so the LR schedule and a GradScaler treat the set like one optimizer.
    """

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for opt in self.optimizers for group in opt.param_groups]

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def unscale_(self, scaler: torch.amp.GradScaler) -> None:
        for opt in self.optimizers:
            scaler.unscale_(opt)

    def step(self, scaler: torch.amp.GradScaler | None = None) -> None:
        for opt in self.optimizers:
            if scaler is not None:
                scaler.step(opt)  # skips the step when the scaled gradients overflowed
            else:
                eager_step(opt)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["optimizers"]
        if len(saved) != len(self.optimizers):
            raise ValueError(
                f"the checkpoint has {len(saved)} optimizer(s), this run builds {len(self.optimizers)}: "
                "was the learner changed? Resume with the same learner, or fork (weights only) instead"
            )
        for opt, s in zip(self.optimizers, saved, strict=True):
            opt.load_state_dict(s)


def sparse_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Weights of embedding tables built with sparse=True (their lookups give sparse gradients)."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Embedding) and m.sparse and m.weight.requires_grad]


def build_optimizer(
    learner: str,
    model: nn.Module,
    learning_rate: float,
    weight_decay: float = 0.0,
    logger: logging.Logger | None = None,
) -> OptimizerSet:
    """RecBole's learners (adam, sgd without momentum, adagrad, rmsprop, sparse_adam) with weight_decay.

    sparse_adam: SparseAdam for the sparse embedding tables (it has no weight decay; a warning says so) and Adam
    for every other parameter. RecBole hands *all* parameters to SparseAdam, which crashes on the first dense
    gradient. Adam/SGD/Adagrad use torch's fused kernels where available (about 8x faster than the default
    per-parameter loop for large embedding tables on CPU).
    """
    sparse = sparse_parameters(model)
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if p.requires_grad and id(p) not in sparse_ids]
    if learner == "sparse_adam":
        if not sparse:
            raise ValueError("learner sparse_adam needs a model with sparse embedding tables; use learner: adam")
        if weight_decay > 0 and logger is not None:
            logger.warning("weight_decay=%s applies to dense parameters only (SparseAdam has none)", weight_decay)
        optimizers: list[torch.optim.Optimizer] = [torch.optim.SparseAdam(sparse, lr=learning_rate)]
        if dense:
            optimizers.append(_dense_optimizer("adam", dense, learning_rate, weight_decay))
        return OptimizerSet(optimizers)
    if sparse:
        raise ValueError(f"the model has sparse embedding tables, which {learner} cannot update; use sparse_adam")
    if not dense:
        raise ValueError("the model has no trainable parameters")
    return OptimizerSet([_dense_optimizer(learner, dense, learning_rate, weight_decay)])


def _dense_optimizer(learner: str, params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    fused = _fused_ok(params)
    if learner == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if learner == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if learner == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if learner == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown learner {learner!r}; expected adam, sgd, adagrad, rmsprop or sparse_adam")


def _fused_ok(params: list[nn.Parameter]) -> bool | None:
    """Fused kernels need floating-point parameters on CPU or CUDA; None lets torch choose otherwise."""
    ok = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return True if ok else None


# -- learning-rate schedule ---------------------------------------------------------------------------------


class LRSchedule:
    """lr(step) = learning_rate x warm-up(step) x ending(step) x plateau scale, applied after every optimizer step.

    - warm-up (seed 002 `epochs_warmup`): linear from learning_rate/W to learning_rate over the first W steps;
    - ending (`epochs_ending`): linear from learning_rate down to learning_rate/E over the last E steps;
    - reduce-on-plateau (`scheduler_patience`, `scheduler_factor`): after `patience` evaluations in a row
      without an improvement (beating the best by more than `threshold`, the rule of EarlyStopping), the scale
      is multiplied by `factor` (1.0 = off).
    """

    def __init__(
        self,
        optimizer: OptimizerSet | torch.optim.Optimizer,
        *,
        learning_rate: float,
        steps_per_epoch: int,
        epochs: int,
        epochs_warmup: int = 0,
        epochs_ending: int = 0,
        patience: int = 3,
        factor: float = 1.0,
        threshold: float = 0.0,
        mode: Mode = "max",
    ):
        self.optimizer = optimizer
        self.base_lr = learning_rate
        self.warmup_steps = epochs_warmup * steps_per_epoch
        self.ending_steps = epochs_ending * steps_per_epoch
        self.total_steps = epochs * steps_per_epoch
        self.patience = patience
        self.factor = factor
        self.threshold = threshold
        self.mode = mode
        self.step_count = 0
        self.scale = 1.0
        self.best: float | None = None
        self.bad_evals = 0
        self._apply()

    def multiplier(self, step: int) -> float:
        """Warm-up x ending factor for optimizer step `step` (0-based), without the plateau scale."""
        f = 1.0
        if self.warmup_steps > 0:
            f *= min(1.0, (step + 1) / self.warmup_steps)
        end_start = self.total_steps - self.ending_steps
        if self.ending_steps > 0 and step >= end_start:
            f *= max(self.total_steps - step, 1) / self.ending_steps
        return f

    @property
    def lr(self) -> float:
        return self.base_lr * self.multiplier(self.step_count) * self.scale

    def step(self) -> None:
        """Call after each optimizer step: sets the learning rate of the next step."""
        self.step_count += 1
        self._apply()

    def on_eval(self, value: float) -> bool:
        """Feed the valid metric after an evaluation; True if the learning rate was just reduced."""
        if improved(value, self.best, self.threshold, self.mode):
            self.best = value
            self.bad_evals = 0
            return False
        self.bad_evals += 1
        if self.factor < 1.0 and self.bad_evals >= self.patience:
            self.scale *= self.factor
            self.bad_evals = 0
            self._apply()
            return True
        return False

    def _apply(self) -> None:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        return {"step_count": self.step_count, "scale": self.scale, "best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.scale = float(state["scale"])
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_evals = int(state["bad_evals"])
        self._apply()


# -- early stopping -----------------------------------------------------------------------------------------


@dataclass
class EarlyStopping:
    """RecBole's `stopping_step` (seed 002's `patience`) with `min_delta`, the one early-stopping rule of every task.

    An evaluation improves when it beats the best value so far by more than `min_delta` (seed 000: "the minimum
    amount of difference between the best value obtained and the new value that represents an improvement"):
    `value > best + min_delta` in max mode, `value < best - min_delta` in min mode. A tie is no improvement, even
    with min_delta 0. Training stops after `patience` evaluations in a row without one.
    """

    patience: int
    min_delta: float = 0.0
    mode: Mode = "max"
    best: float | None = None
    bad_evals: int = 0

    def update(self, value: float) -> bool:
        """Record one evaluation; True if it is an improvement."""
        if improved(value, self.best, self.min_delta, self.mode):
            self.best = value
            self.bad_evals = 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_evals >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_evals = int(state["bad_evals"])


def improved(value: float, best: float | None, min_delta: float, mode: Mode) -> bool:
    """Whether `value` beats `best` by more than `min_delta` (see EarlyStopping); anything beats no best yet."""
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


# -- mixed precision and gradient steps ---------------------------------------------------------------------


def amp_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CPU (float16 autocast is not supported there), float16 on CUDA."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device), enabled=enabled)


def warn_if_slow_amp(device: torch.device, enable_amp: bool, logger: logging.Logger) -> None:
    """bfloat16 matmuls are emulated on CPUs without AVX-512 (measured 5x slower than float32 on an AVX2 EPYC)."""
    if enable_amp and device.type == "cpu" and "AVX512" not in torch.backends.cpu.get_cpu_capability():
        logger.warning(
            "enable_amp on this CPU (%s, no AVX-512) runs bfloat16 in software, which is slower than float32; "
            "turn enable_amp off here", torch.backends.cpu.get_cpu_capability()
        )


def make_grad_scaler(device: torch.device, enable_scaler: bool, logger: logging.Logger) -> torch.amp.GradScaler | None:
    """A GradScaler on CUDA when asked for; on CPU none, with one warning (bfloat16 needs no loss scaling)."""
    if not enable_scaler:
        return None
    if device.type != "cuda":
        logger.warning("enable_scaler is ignored on %s: loss scaling is for float16 on CUDA", device.type)
        return None
    return torch.amp.GradScaler("cuda")


def backward_and_step(
    loss: torch.Tensor,
    optimizer: OptimizerSet,
    parameters: list[nn.Parameter],
    *,
    scaler: torch.amp.GradScaler | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    phase: Callable[[str], contextlib.AbstractContextManager[Any]] | None = None,
) -> torch.Tensor | None:
    """zero_grad -> backward -> (unscale, clip) -> step -> scaler update. Returns the pre-clip norm if clipping.

    Clipping runs after `scaler.unscale_`, so it compares real gradients with max_norm (RecBole clips the
    scaled ones, which makes max_norm depend on the current loss scale). `phase` labels the backward and optimizer
    parts for the profiler (workbench/tasks/profiling.py).
    """
    phase = phase or _no_phase
    with phase("backward"):
        optimizer.zero_grad()
        (scaler.scale(loss) if scaler is not None else loss).backward()
    with phase("optimizer"):
        norm = None
        if max_norm is not None:
            if scaler is not None:
                optimizer.unscale_(scaler)
            norm = clip_grad_norm(parameters, max_norm, norm_type)
        optimizer.step(scaler)
        if scaler is not None:
            scaler.update()
    return norm


_NOTHING = contextlib.nullcontext()


def _no_phase(name: str) -> contextlib.AbstractContextManager[Any]:
    return _NOTHING


def clip_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float, norm_type: float = 2.0) -> torch.Tensor:
    """`clip_grad_norm_` that also accepts sparse gradients (SparseAdam tables); same total-norm semantics."""
    params = [p for p in parameters if p.grad is not None]
    grads = [p.grad for p in params]
    if not grads:
        return torch.tensor(0.0)
    if not any(g.is_sparse for g in grads):
        return nn.utils.clip_grad_norm_(params, max_norm, norm_type)
    # coalesce: an uncoalesced sparse gradient may list one row several times; the norm needs the sums
    norms = [torch.linalg.vector_norm(g.coalesce().values() if g.is_sparse else g, norm_type) for g in grads]
    stacked = torch.stack([n.to(norms[0].device) for n in norms])
    total = stacked.max() if norm_type == float("inf") else torch.linalg.vector_norm(stacked, norm_type)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.to(g.device))
    return total


# -- RNG state ----------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's, torch's CPU and (when present) CUDA generator states, as tensors and plain values so
    that they fit a weights_only checkpoint. Restore them with set_rng_state to continue the same random streams."""
    version, mt_words, gauss_next = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(mt_words, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state captured. Checkpoints written before Python and NumPy were captured hold only
    "torch" (and "cuda"): those two generators then go on from the run's seed."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss_next"]))
    if "numpy" in state:
        npy = state["numpy"]
        keys = npy["keys"].numpy().astype(np.uint32)
        np.random.set_state(("MT19937", keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
