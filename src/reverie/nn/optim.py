"""Adam with global-norm clipping and the official code's decoupled weight decay.

One ``Optimizer`` per trained part (world model, actor, critic), as in the official
DreamerV2 code (``common/nets.py: Optimizer``). A step is:

1. global gradient norm over this optimizer's parameters (metric ``<name>_grad_norm``);
2. clip to ``clip`` (Table D1: 100);
3. ``param *= 1 − weight_decay`` for *every* parameter of this optimizer (the official
   ``wd_pattern`` matches all variables). This is not ``AdamW``, whose decay is scaled by
   the learning rate and would be ~5000× weaker at lr 2e-4;
4. Adam with ``eps`` and the learning rate ``lr(step)``. ``eps`` is Keras'
   ε (the official code's Adam): added to √v *before* the bias correction (Kingma & Ba's
   "ε-hat"). torch adds its ε after it, so each step sets torch's ε to ε / √(1 − β2^t): the
   same update. With torch's own ε the first update of an element with |g| ≲ 3e-4 would be
   up to 30× larger than the official one (measured by the parity suite, tests/parity).

A non-finite gradient norm skips the whole step (no decay, no Adam update) and reports
``<name>_skipped = 1``, so that one bad batch does not crash or poison a multi-day run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn


class Optimizer:
    """Adam + clipping + decoupled decay over ``parameters``; ``name`` prefixes the metrics.

    Plain values in, as the module docstring numbers them: ``lr`` maps the step given to
    ``step`` to the learning rate (the agent builds it from a schedule string,
    ``reverie.agent.build_optimizer``); ``eps`` is Keras' ε-hat; ``clip`` the global-norm
    bound (0: no clipping); ``weight_decay`` the decoupled decay factor.
    """

    def __init__(self, name: str, parameters: Iterable[nn.Parameter], lr: Callable[[int], float], *,
                 eps: float, clip: float, weight_decay: float):
        self.name = name
        self.params = [p for p in parameters if p.requires_grad]
        if not self.params:
            raise ValueError(f"optimizer {name!r} got no trainable parameters")
        self.clip = clip
        self.weight_decay = weight_decay
        self.lr = lr
        # Fused Adam: one pass over each parameter instead of several (~1.6× on CPU).
        fused = self.params[0].device.type in ("cuda", "cpu")
        self.adam = torch.optim.Adam(self.params, lr=self.lr(0), eps=eps, fused=fused)
        self.eps = eps  # Keras' ε-hat; see the module docstring
        self.adam_steps = 0  # Adam updates applied (t of the bias correction)

    def zero_grad(self) -> None:
        self.adam.zero_grad(set_to_none=True)

    def step(self, loss: torch.Tensor | None, step: int) -> dict[str, torch.Tensor]:
        """Backward ``loss`` (if given; else use the ``.grad`` already there) and update.

        Gradients are cleared before the backward pass and after the update, so nothing
        computed for another optimizer can leak into this one. Returns metrics as 0-dim
        tensors (``<name>_grad_norm``, ``<name>_skipped``) so the caller syncs once.
        """
        if loss is not None:
            self.zero_grad()
            loss.backward()
        # clip_grad_norm_ returns the pre-clipping global norm (treats missing grads as 0).
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip if self.clip > 0 else float("inf"))
        beta2 = self.adam.defaults["betas"][1]
        for group in self.adam.param_groups:
            group["lr"] = self.lr(step)
            group["eps"] = self.eps / math.sqrt(1.0 - beta2 ** (self.adam_steps + 1))
        if self.adam.defaults["fused"]:
            # The skip is decided on the device, without waiting for it: fused Adam leaves
            # parameters, moments and step count alone where ``found_inf`` is 1 (the
            # mechanism of torch's GradScaler), and the decay factor becomes 1.
            skipped = (~torch.isfinite(norm)).float()
            if self.weight_decay:
                with torch.no_grad():
                    # The factor in the parameters' dtype: 1 − 1e-6 rounded to float32 decays
                    # float64 parameters 1.3% too much.
                    keep = 1.0 - skipped.to(self.params[0].dtype)
                    torch._foreach_mul_(self.params, 1.0 - self.weight_decay * keep)
            self.adam.found_inf = skipped
            self.adam.step()
            # Counted without reading ``skipped`` (a device sync): after a skipped step (a
            # non-finite gradient, rare) ε runs one step ahead, < 0.5% off after 100 steps.
            self.adam_steps += 1
        else:
            finite = bool(torch.isfinite(norm))  # one host sync per step to decide to skip
            if finite:
                if self.weight_decay:
                    with torch.no_grad():
                        torch._foreach_mul_(self.params, 1.0 - self.weight_decay)
                self.adam.step()
                self.adam_steps += 1
            skipped = torch.tensor(0.0 if finite else 1.0, device=norm.device)
        self.zero_grad()
        return {f"{self.name}_grad_norm": norm.detach(), f"{self.name}_skipped": skipped}

    def state_dict(self) -> dict:
        return self.adam.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.adam.load_state_dict(state)
        steps = [float(s["step"]) for s in self.adam.state.values() if "step" in s]
        self.adam_steps = int(max(steps)) if steps else 0
