"""Building data loaders' mappers from the config."""
from detectron2.utils.registry import Registry

DATASET_MAPPER_REGISTRY = Registry("DATASET_MAPPER")
DATASET_MAPPER_REGISTRY.__doc__ = """
Dataset mappers, selected by cfg.INPUT.DATASET_MAPPER_NAME. A mapper is called as
`mapper(cfg, is_train)` (detectron2 @configurable) and maps one dataset dict to model input.
"""


def build_dataset_mapper(cfg, is_train):
    return DATASET_MAPPER_REGISTRY.get(cfg.INPUT.DATASET_MAPPER_NAME)(cfg, is_train)
