"""Dataset registrations; importing this package registers every dataset (detectron2 style)."""
from . import pascal_voc  # noqa: F401  (registers voc_2012_*_sem_seg)
from . import synthetic  # noqa: F401  (registers wss_synthetic_{train,val})
from .paths import get_datasets_root
from .pascal_voc import VOC_CLASSES, find_voc_root, load_voc_sem_seg, read_split_ids, voc_colors, voc_palette
from .synthetic import SYNTHETIC_CLASSES, ensure_synthetic_dataset, generate_synthetic_dataset
