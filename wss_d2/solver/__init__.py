from .build import build_lr_scheduler, build_optimizer
from .param_groups import PARAM_GROUPS_REGISTRY, build_param_groups, default_param_groups
