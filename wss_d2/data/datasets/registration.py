"""Registering semantic-segmentation datasets with detectron2's catalogs."""
from detectron2.data import DatasetCatalog, MetadataCatalog


def register_sem_seg_dataset(name, loader, stuff_classes, stuff_colors, ignore_label=255, **metadata):
    """Register `loader` (called on first use) under `name` with the metadata every wss_d2
    semantic dataset carries; `metadata` adds dataset-specific fields."""
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(
        stuff_classes=list(stuff_classes),
        stuff_colors=stuff_colors,
        ignore_label=ignore_label,
        evaluator_type="sem_seg",
        **metadata,
    )
