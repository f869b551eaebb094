"""
detectron2's SimpleTrainer / AMPTrainer with the bookkeeping that exact interrupted checkpoints
and clear divergence errors need: each step checks its own loss terms (every process, before
the gather) and records when the optimizer step begins, after which the parameters are no
longer those of the last finished iteration.

Both also accumulate gradients (SOLVER.ACCUMULATE_STEPS, docs/mcc.md §8, §14.5): with n > 1
one iteration is one optimizer step over the summed gradients of n consecutive loader batches,
each loss divided by n, so a schedule written for a large global batch runs unchanged with a
per-forward batch n times smaller.
"""
import contextlib
import math
import time
from typing import Dict, Optional

import torch

from detectron2.engine import AMPTrainer, SimpleTrainer

__all__ = ["LossDivergedError", "WSSSimpleTrainer", "WSSAMPTrainer", "check_gradient_accumulation"]


class LossDivergedError(FloatingPointError):
    """A loss term became NaN or infinite."""

    def __init__(self, iteration, losses):
        self.iteration = iteration
        self.losses = dict(losses)
        self.terms = sorted(k for k, v in self.losses.items() if not math.isfinite(v))
        shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.losses.items()))
        super().__init__(
            f"The loss diverged at iteration {iteration}: non-finite {', '.join(self.terms)} ({shown}). "
            "Lower SOLVER.BASE_LR (or enable SOLVER.CLIP_GRADIENTS) and resume."
        )


def check_gradient_accumulation(accumulate_steps: int, model: Optional[torch.nn.Module] = None) -> None:
    """
    Raise ValueError unless `accumulate_steps` (SOLVER.ACCUMULATE_STEPS) is an integer >= 1 that
    `model` supports. A meta-architecture whose loss needs the whole batch in one forward pass
    (e.g. segments or a memory bank formed across all images) sets the class attribute
    `supports_gradient_accumulation = False`; it then only trains with 1. model=None checks
    the value alone.
    """
    if isinstance(accumulate_steps, bool) or not isinstance(accumulate_steps, int) or accumulate_steps < 1:
        raise ValueError(
            f"SOLVER.ACCUMULATE_STEPS must be an integer >= 1 (1 = no gradient accumulation), got {accumulate_steps!r}"
        )
    if model is None:
        return
    inner = getattr(model, "module", model)  # DistributedDataParallel
    if accumulate_steps > 1 and not getattr(type(inner), "supports_gradient_accumulation", True):
        raise ValueError(
            f"SOLVER.ACCUMULATE_STEPS={accumulate_steps}: the model {type(inner).__name__} does not support "
            "gradient accumulation (its loss needs the whole batch in one forward pass); set "
            "SOLVER.ACCUMULATE_STEPS=1 and raise SOLVER.IMS_PER_BATCH instead"
        )


def _finite_values(iteration: int, loss_dict: Dict[str, torch.Tensor]) -> Dict[str, float]:
    values = {k: float(v.detach()) for k, v in loss_dict.items()}
    if not all(math.isfinite(v) for v in values.values()):
        raise LossDivergedError(iteration, values)
    return values


class _TrackedStep:
    optimizer_started = False

    def __init__(self, model, data_loader, optimizer, *args, accumulate_steps: int = 1, **kwargs):
        """
        Args:
            model, data_loader, optimizer (and the AMP trainer's grad_scaler): as detectron2's.
            accumulate_steps: loader batches per optimizer step (SOLVER.ACCUMULATE_STEPS); the
                iteration counter, and every hook with it, counts optimizer steps.
        """
        check_gradient_accumulation(accumulate_steps, model)
        super().__init__(model, data_loader, optimizer, *args, **kwargs)
        self.accumulate_steps = accumulate_steps

    def run_step(self):
        self.optimizer_started = False
        if self.accumulate_steps == 1:
            super().run_step()  # detectron2's step, unchanged
        else:
            self._run_accumulated_step()

    def _write_metrics(self, loss_dict, data_time, prefix=""):
        _finite_values(self.iter, loss_dict)
        super()._write_metrics(loss_dict, data_time, prefix)
        self.optimizer_started = True  # the optimizer step follows: the parameters change from here on

    # --- gradient accumulation --------------------------------------------------------------
    def _run_accumulated_step(self):
        """
        One optimizer step over `accumulate_steps` loader batches: the gradient is that of the
        mean of their losses, the logged metrics are the mean of each term over the batches (a
        term a batch lacks counts as 0 there, as in the gradient) and data_time is the total.
        """
        assert self.model.training, f"[{type(self).__name__}] model was changed to eval mode!"
        n = self.accumulate_steps
        self.optimizer.zero_grad()
        sums: Dict[str, torch.Tensor] = {}
        data_time = 0.0
        for k in range(n):
            start = time.perf_counter()
            data = next(self._data_loader_iter)
            data_time += time.perf_counter() - start
            # DDP: all-reduce once, in the last backward; the earlier ones only add up locally
            last = k == n - 1
            no_sync = getattr(self.model, "no_sync", None)
            with contextlib.nullcontext() if last or no_sync is None else no_sync():
                with self._forward_context():
                    loss_dict = self.model(data)
                    if isinstance(loss_dict, torch.Tensor):
                        loss_dict = {"total_loss": loss_dict}
                    losses = sum(loss_dict.values())
                _finite_values(self.iter, loss_dict)  # before a non-finite gradient is added
                self._backward(losses / n)
            for name, value in loss_dict.items():
                value = value.detach()
                value = value.to(torch.promote_types(value.dtype, torch.float32))  # fp16 under AMP
                sums[name] = sums[name] + value if name in sums else value
        self._write_metrics({name: total / n for name, total in sums.items()}, data_time)
        self._optimizer_step()

    def _forward_context(self):
        return contextlib.nullcontext()

    def _backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def _optimizer_step(self) -> None:
        self.optimizer.step()


class WSSSimpleTrainer(_TrackedStep, SimpleTrainer):
    pass


class WSSAMPTrainer(_TrackedStep, AMPTrainer):
    def _run_accumulated_step(self):
        assert torch.cuda.is_available(), "[AMPTrainer] CUDA is required for AMP training!"
        super()._run_accumulated_step()

    def _forward_context(self):
        return torch.autocast("cuda")  # what detectron2's AMPTrainer uses (torch.cuda.amp.autocast)

    def _backward(self, loss: torch.Tensor) -> None:
        # the scale is fixed until update(): every batch's gradient is scaled alike
        self.grad_scaler.scale(loss).backward()

    def _optimizer_step(self) -> None:
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
