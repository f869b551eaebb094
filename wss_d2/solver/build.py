"""Optimizer and LR schedule from the config."""
import torch

from detectron2.projects.deeplab import build_lr_scheduler as build_deeplab_lr_scheduler
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

__all__ = ["build_optimizer", "build_lr_scheduler"]


def split_backbone_groups(param_groups, backbone_params, backbone_multiplier):
    """Split each group into its backbone and other parameters; backbone ones get lr * multiplier."""
    result = []
    for group in param_groups:
        backbone = [p for p in group["params"] if p in backbone_params]
        others = [p for p in group["params"] if p not in backbone_params]
        if backbone:
            result.append({**group, "params": backbone, "lr": group["lr"] * backbone_multiplier})
        if others:
            result.append({**group, "params": others})
    return result


def build_optimizer(cfg, model):
    """
    SGD or AdamW (SOLVER.OPTIMIZER) over parameter groups: backbone parameters (those of
    `model.backbone`) at SOLVER.BASE_LR * SOLVER.BACKBONE_MULTIPLIER, new layers at
    SOLVER.BASE_LR; detectron2's norm and bias rules (WEIGHT_DECAY_NORM, BIAS_LR_FACTOR,
    WEIGHT_DECAY_BIAS); optional gradient clipping (SOLVER.CLIP_GRADIENTS).
    """
    solver = cfg.SOLVER
    groups = get_default_optimizer_params(
        model,
        base_lr=solver.BASE_LR,
        weight_decay=solver.WEIGHT_DECAY,
        weight_decay_norm=solver.WEIGHT_DECAY_NORM,
        bias_lr_factor=solver.BIAS_LR_FACTOR,
        weight_decay_bias=solver.WEIGHT_DECAY_BIAS,
    )
    backbone = getattr(model, "backbone", None)
    backbone_params = set(backbone.parameters()) if backbone is not None else set()
    groups = split_backbone_groups(groups, backbone_params, solver.BACKBONE_MULTIPLIER)

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
    one total norm (torch.nn.utils.clip_grad_norm_; SIPE §4.1). detectron2's CLIP_TYPE "norm"
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
    """detectron2's schedulers plus the DeepLab project's WarmupPolyLR (SOLVER.POLY_LR_*)."""
    return build_deeplab_lr_scheduler(cfg, optimizer)
