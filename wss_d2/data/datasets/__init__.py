"""Dataset registrations; importing this package registers every dataset (detectron2 style)."""
from . import synthetic  # noqa: F401  (registers wss_synthetic_{train,val})
from .paths import get_datasets_root
from .pascal_voc import load_voc_sem_seg, read_split_ids, voc_colors, voc_palette
from .synthetic import SYNTHETIC_CLASSES, ensure_synthetic_dataset, generate_synthetic_dataset
