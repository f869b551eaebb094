"""MaskFormer's optimizer parameter groups (docs/maskformer.md §5)."""
import torch


from ...solver.param_groups import PARAM_GROUPS_REGISTRY

__all__ = ["maskformer_param_groups"]

NORM_TYPES = (
    torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm,
    torch.nn.GroupNorm, torch.nn.InstanceNorm1d, torch.nn.InstanceNorm2d, torch.nn.InstanceNorm3d,
    torch.nn.LayerNorm, torch.nn.LocalResponseNorm,
)


@PARAM_GROUPS_REGISTRY.register()
def maskformer_param_groups(cfg, model):
    """
    One group per trainable parameter: SOLVER.BASE_LR and WEIGHT_DECAY, the LR times
    SOLVER.BACKBONE_MULTIPLIER for parameters of a module whose name contains "backbone",
    WEIGHT_DECAY_NORM for normalisation layers (detectron2's FrozenBatchNorm has no parameters),
    WEIGHT_DECAY_EMBED for nn.Embedding (the queries). Biases are not special.
    """
    solver = cfg.SOLVER
    groups, seen = [], set()
    for module_name, module in model.named_modules():
        for param in module.parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            group = {"params": [param], "lr": solver.BASE_LR, "weight_decay": solver.WEIGHT_DECAY}
            if "backbone" in module_name:
                group["lr"] = solver.BASE_LR * solver.BACKBONE_MULTIPLIER
            if isinstance(module, NORM_TYPES):
                group["weight_decay"] = solver.WEIGHT_DECAY_NORM
            if isinstance(module, torch.nn.Embedding):
                group["weight_decay"] = solver.WEIGHT_DECAY_EMBED
            groups.append(group)
    return groups
