"""Building data loaders' mappers from the config."""
from detectron2.utils.registry import Registry

DATASET_MAPPER_REGISTRY = Registry("DATASET_MAPPER")
DATASET_MAPPER_REGISTRY.__doc__ = """
Dataset mappers, selected by cfg.INPUT.DATASET_MAPPER_NAME. A mapper is called as
`mapper(cfg, is_train, dataset_names)` (detectron2 @configurable) and maps one dataset dict
to model input; `dataset_names` (default: DATASETS.TRAIN or DATASETS.TEST) are the datasets
whose metadata (label conventions) it follows.
"""


def build_dataset_mapper(cfg, is_train, dataset_names=None):
    return DATASET_MAPPER_REGISTRY.get(cfg.INPUT.DATASET_MAPPER_NAME)(cfg, is_train, dataset_names=dataset_names)
