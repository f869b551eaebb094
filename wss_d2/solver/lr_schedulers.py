"""LR schedules that detectron2 and its DeepLab project do not have."""
import torch

__all__ = ["LinearWarmupPolyLR", "linear_warmup_poly_multiplier"]


def linear_warmup_poly_multiplier(step, max_iter, warmup_iters, warmup_factor, power):
    """
    The multiplier of ToCo / MCC's "PolyWarmupAdamW" before optimizer step `step` (0-based,
    docs/mcc.md §8): 1 − (1 − step/warmup_iters)(1 − warmup_factor) during the warm-up (a ratio
    rising linearly from warmup_factor to 1), then (1 − step/max_iter)^power, not rebased on the
    warm-up (the multiplier drops from about 1 to the poly value at step warmup_iters).
    """
    if step < warmup_iters:
        return 1.0 - (1.0 - step / warmup_iters) * (1.0 - warmup_factor)
    return (1.0 - step / max_iter) ** power


class LinearWarmupPolyLR(torch.optim.lr_scheduler.LRScheduler):
    """Every group's initial LR times `linear_warmup_poly_multiplier` of the scheduler's step count."""

    def __init__(self, optimizer, max_iter, warmup_iters, warmup_factor, power, last_epoch=-1):
        if max_iter <= 0 or warmup_iters < 0 or not 0 <= warmup_factor <= 1:
            raise ValueError(
                f"LinearWarmupPolyLR: SOLVER.MAX_ITER ({max_iter}) must be > 0, SOLVER.WARMUP_ITERS ({warmup_iters}) "
                f">= 0 and SOLVER.WARMUP_FACTOR ({warmup_factor}) in [0, 1]"
            )
        self.max_iter, self.warmup_iters = max_iter, warmup_iters
        self.warmup_factor, self.power = warmup_factor, power
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        # past MAX_ITER (a checkpoint resumed with a shorter schedule) the poly base is clamped at 0
        step = min(self.last_epoch, self.max_iter)
        factor = linear_warmup_poly_multiplier(step, self.max_iter, self.warmup_iters, self.warmup_factor, self.power)
        return [base_lr * factor for base_lr in self.base_lrs]
