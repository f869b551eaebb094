"""
detectron2's SimpleTrainer / AMPTrainer with the bookkeeping that exact interrupted checkpoints
and clear divergence errors need: each step checks its own loss terms (every process, before
the gather) and records when the optimizer step begins, after which the parameters are no
longer those of the last finished iteration.
"""
import math

from detectron2.engine import AMPTrainer, SimpleTrainer

__all__ = ["LossDivergedError", "WSSSimpleTrainer", "WSSAMPTrainer"]


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


class _TrackedStep:
    optimizer_started = False

    def run_step(self):
        self.optimizer_started = False
        super().run_step()

    def _write_metrics(self, loss_dict, data_time, prefix=""):
        values = {k: float(v.detach()) for k, v in loss_dict.items()}
        if not all(math.isfinite(v) for v in values.values()):
            raise LossDivergedError(self.iter, values)
        super()._write_metrics(loss_dict, data_time, prefix)
        self.optimizer_started = True  # the optimizer step follows: the parameters change from here on


class WSSSimpleTrainer(_TrackedStep, SimpleTrainer):
    pass


class WSSAMPTrainer(_TrackedStep, AMPTrainer):
    pass
