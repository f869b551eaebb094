"""Dataset registrations; importing this package registers every dataset (detectron2 style)."""
from . import pascal_voc  # noqa: F401  (registers voc_2012_*_sem_seg)
from . import synthetic  # noqa: F401  (registers wss_synthetic_{train,val})
from . import coco  # noqa: F401  (registers coco_2014_*_voc_*)
from . import coco_stuff_10k  # noqa: F401  (registers coco_stuff_10k_*)
from . import ade20k  # noqa: F401  (registers ade20k_wss_sem_seg_*, ade20k_*_ws_split*)
from . import cityscapes  # noqa: F401  (registers cityscapes_wss_sem_seg_*, cityscapes_fine_sem_seg_train_*clicks)
from . import densepose  # noqa: F401  (registers densepose_coco_2014_*_parts_*)
from .paths import get_datasets_root
from .pseudo_labels import register_pseudo_label_dataset, register_pseudo_labels_from_config
from .folder import register_folder_dataset, register_folder_dataset_from_config
from .loading import read_split_ids
from .pascal_voc import VOC_CLASSES, find_voc_root, load_voc_sem_seg, voc_colors, voc_palette
from .synthetic import SYNTHETIC_CLASSES, ensure_synthetic_dataset, generate_synthetic_dataset


def register_datasets_from_config(cfg):
    """The datasets a config defines, in every process: DATASETS.FOLDER (your own), then
    DATASETS.PSEUDO_LABELS / CAMS (which may name it as their source)."""
    register_folder_dataset_from_config(cfg)
    register_pseudo_labels_from_config(cfg)
