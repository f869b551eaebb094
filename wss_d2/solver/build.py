"""Optimizer and LR schedule from the config."""
import torch

from detectron2.projects.deeplab import build_lr_scheduler as build_deeplab_lr_scheduler
from detectron2.solver.build import maybe_add_gradient_clipping

from .lr_schedulers import LinearWarmupPolyLR
from .param_groups import build_param_groups

__all__ = ["build_optimizer", "build_lr_scheduler"]


def build_optimizer(cfg, model):
    """
    SGD or AdamW (SOLVER.OPTIMIZER) over the parameter groups of the builder named
    SOLVER.PARAM_GROUPS (wss_d2.solver.param_groups; "default_param_groups": detectron2's
    norm and bias rules plus SOLVER.BACKBONE_MULTIPLIER); optional gradient clipping
    (SOLVER.CLIP_GRADIENTS).
    """
    solver = cfg.SOLVER
    groups = build_param_groups(cfg, model)

    name = solver.OPTIMIZER.upper()
    clip = solver.CLIP_GRADIENTS
    if name == "SGD":
        optimizer_class, kwargs = torch.optim.SGD, {"momentum": solver.MOMENTUM, "nesterov": solver.NESTEROV}
    elif name == "ADAMW":
        optimizer_class, kwargs = torch.optim.AdamW, {}
    else:
        raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD' or 'ADAMW', got {solver.OPTIMIZER!r}")
    if clip.ENABLED and clip.CLIP_TYPE == "full_model":
        optimizer_class = with_full_model_clipping(optimizer_class, clip.CLIP_VALUE, clip.NORM_TYPE)
    else:
        optimizer_class = maybe_add_gradient_clipping(cfg, optimizer_class)
    return optimizer_class(groups, lr=solver.BASE_LR, weight_decay=solver.WEIGHT_DECAY, **kwargs)


def with_full_model_clipping(optimizer_class, max_norm, norm_type=2.0):
    """
    `optimizer_class` whose step first clips the gradients of all its parameters together to
    one total norm (torch.nn.utils.clip_grad_norm_; docs/sipe.md §4.1). detectron2's CLIP_TYPE "norm"
    clips every parameter on its own, which is not the same. Under DDP the gradients are
    already all-reduced when step() runs.
    """

    class FullModelClipping(optimizer_class):
        def step(self, closure=None):
            params = [p for group in self.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
            return super().step(closure)

    FullModelClipping.__name__ = f"{optimizer_class.__name__}WithFullModelClipping"
    return FullModelClipping


def build_lr_scheduler(cfg, optimizer):
    """
    detectron2's schedulers, the DeepLab project's WarmupPolyLR (SOLVER.POLY_LR_*) and
    "LinearWarmupPolyLR" (MCC / ToCo: SOLVER.WARMUP_ITERS, WARMUP_FACTOR as a ratio, POLY_LR_POWER;
    wss_d2.solver.lr_schedulers).
    """
    solver = cfg.SOLVER
    if solver.LR_SCHEDULER_NAME == "LinearWarmupPolyLR":
        return LinearWarmupPolyLR(
            optimizer, solver.MAX_ITER, solver.WARMUP_ITERS, solver.WARMUP_FACTOR, solver.POLY_LR_POWER
        )
    return build_deeplab_lr_scheduler(cfg, optimizer)
