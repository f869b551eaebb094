from . import datasets  # noqa: F401  (registers the datasets)
from .build import DATASET_MAPPER_REGISTRY, build_dataset_mapper
from .dataset_mapper import WeakLabelDatasetMapper
from .readers import read_image, read_label_map
