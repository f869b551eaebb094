"""
Parameter groups of the optimizer, chosen per method by the config.

`build_optimizer` calls the builder named by SOLVER.PARAM_GROUPS in PARAM_GROUPS_REGISTRY:
`builder(cfg, model)` returns the list of torch.optim parameter-group dicts ("params" plus any
per-group "lr", "weight_decay", ...; unset values fall back to SOLVER.BASE_LR and
SOLVER.WEIGHT_DECAY). A method with its own rules (e.g. ViT layer-wise LR decay, no decay on
embeddings) registers a builder and names it in its Base config:

    @PARAM_GROUPS_REGISTRY.register()
    def vit_layer_decay_param_groups(cfg, model):
        ...

    SOLVER:
      PARAM_GROUPS: "vit_layer_decay_param_groups"

"default_param_groups" is what every method used so far: detectron2's norm and bias rules
plus the backbone LR multiplier.
"""
from detectron2.solver.build import get_default_optimizer_params
from detectron2.utils.registry import Registry

__all__ = ["PARAM_GROUPS_REGISTRY", "build_param_groups", "default_param_groups", "split_backbone_groups"]

PARAM_GROUPS_REGISTRY = Registry("PARAM_GROUPS")
PARAM_GROUPS_REGISTRY.__doc__ = """
Registry of optimizer parameter-group builders, `builder(cfg, model) -> list[dict]`,
selected by SOLVER.PARAM_GROUPS.
"""


def build_param_groups(cfg, model):
    """The parameter groups of `model` by the builder named SOLVER.PARAM_GROUPS."""
    return PARAM_GROUPS_REGISTRY.get(cfg.SOLVER.PARAM_GROUPS)(cfg, model)


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


@PARAM_GROUPS_REGISTRY.register()
def default_param_groups(cfg, model):
    """
    Backbone parameters (those of `model.backbone`) at SOLVER.BASE_LR *
    SOLVER.BACKBONE_MULTIPLIER, new layers at SOLVER.BASE_LR; detectron2's norm and bias
    rules (WEIGHT_DECAY_NORM, BIAS_LR_FACTOR, WEIGHT_DECAY_BIAS). Frozen parameters are left out.
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
    return split_backbone_groups(groups, backbone_params, solver.BACKBONE_MULTIPLIER)
