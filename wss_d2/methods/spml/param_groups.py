"""
SPML's optimizer parameter groups (docs/spml.md §8.1), `SOLVER.PARAM_GROUPS: "spml_param_groups"`.

| parameters                                   | LR                                   | weight decay        |
| backbone weights (convs and BN γ)            | BASE_LR                              | WEIGHT_DECAY        |
| backbone biases (BN β)                       | BASE_LR·BIAS_LR_FACTOR (×2)          | WEIGHT_DECAY_BIAS (0) |
| other weights (embedding head, classifiers)  | BASE_LR·HEAD_LR_MULTIPLIER (×10)     | WEIGHT_DECAY        |
| other biases                                 | BASE_LR·HEAD_LR_MULTIPLIER·BIAS_LR_FACTOR (×20) | WEIGHT_DECAY_BIAS (0) |
| parameters without requires_grad             | left out: SPMLEmbedder's MODEL.SPML.FROZEN_STAGES (stem, res2), SPMLClassifier's whole embedding network |

BN γ takes the weight decay of the weights (detectron2's WEIGHT_DECAY_NORM is not used); a bias is
any parameter named `*.bias`.
"""
from ...solver.param_groups import PARAM_GROUPS_REGISTRY

__all__ = ["spml_param_groups"]


@PARAM_GROUPS_REGISTRY.register()
def spml_param_groups(cfg, model):
    solver = cfg.SOLVER
    head_multiplier = cfg.MODEL.SPML.HEAD_LR_MULTIPLIER
    model = getattr(model, "module", model)
    backbone = getattr(model, "backbone", None)
    backbone_params = set(backbone.parameters()) if backbone is not None else set()
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr = solver.BASE_LR * (1.0 if p in backbone_params else head_multiplier)
        decay = solver.WEIGHT_DECAY
        if name.endswith(".bias"):
            lr *= solver.BIAS_LR_FACTOR
            decay = solver.WEIGHT_DECAY if solver.WEIGHT_DECAY_BIAS is None else solver.WEIGHT_DECAY_BIAS
        groups.setdefault((lr, decay), []).append(p)
    return [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]
