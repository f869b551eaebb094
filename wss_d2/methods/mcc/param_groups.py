"""
MCC's optimizer parameter groups (docs/mcc.md §8), `SOLVER.PARAM_GROUPS: "mcc_param_groups"`, with
SOLVER.OPTIMIZER "ADAMW" and SOLVER.WEIGHT_DECAY 0.01 on every group (norms and the CLS token included):

| group | parameters                                             | LR                              |
| 0     | backbone parameters without "norm" in their name        | BASE_LR                         |
| 1     | backbone parameters with "norm" in their name           | BASE_LR                         |
| 2     | classifier, aux classifier, student projector           | BASE_LR·MODEL.MCC.HEAD_LR_MULTIPLIER |
| 3     | LargeFOV decoder                                         | BASE_LR·MODEL.MCC.HEAD_LR_MULTIPLIER |

Parameters without requires_grad (the frozen positional embedding, the projector's fixed magnitude,
the EMA teacher) are left out; they never get a gradient in the original either.
"""
from ...solver.param_groups import PARAM_GROUPS_REGISTRY

__all__ = ["mcc_param_groups"]

HEAD_MODULES = ("classifier", "aux_classifier", "projector")


@PARAM_GROUPS_REGISTRY.register()
def mcc_param_groups(cfg, model):
    solver = cfg.SOLVER
    model = getattr(model, "module", model)
    head_lr = solver.BASE_LR * cfg.MODEL.MCC.HEAD_LR_MULTIPLIER

    def trainable(module):
        return [(n, p) for n, p in module.named_parameters() if p.requires_grad]

    backbone = trainable(model.backbone)
    heads = [p for name in HEAD_MODULES for _, p in trainable(getattr(model, name))]
    groups = [
        {"params": [p for n, p in backbone if "norm" not in n], "lr": solver.BASE_LR},
        {"params": [p for n, p in backbone if "norm" in n], "lr": solver.BASE_LR},
        {"params": heads, "lr": head_lr},
        {"params": [p for _, p in trainable(model.decoder)], "lr": head_lr},
    ]
    for group in groups:
        group["weight_decay"] = solver.WEIGHT_DECAY
    covered = {id(p) for group in groups for p in group["params"]}
    missed = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if missed:
        raise ValueError(f"mcc_param_groups: trainable parameters outside the four groups: {missed[:5]}")
    return groups
