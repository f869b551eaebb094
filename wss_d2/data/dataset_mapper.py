"""
The wss_d2 dataset mapper: image + dense label map, read as raw indices, with the same
geometric augmentation applied to both.
"""
import copy
import logging

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import transforms as T

from .augmentation import RandomScale
from .build import DATASET_MAPPER_REGISTRY
from .readers import check_label_values, check_same_size, read_image, read_label_map

__all__ = ["SemanticDatasetMapper"]


@DATASET_MAPPER_REGISTRY.register()
class SemanticDatasetMapper:
    """
    Map a dataset dict (file_name, optional sem_seg_file_name) to the model input:
      image:  (C, H, W) uint8 tensor in `image_format` channel order;
      sem_seg: (H, W) long tensor of label values (ignore_label where unlabelled);
      height, width: the original image size (predictions are returned at this size).
    Labels are checked against the image size and the class range, naming the file.
    """

    @configurable
    def __init__(self, is_train=True, *, augmentations, image_format, num_classes, ignore_label):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        mode = "training" if is_train else "inference"
        logging.getLogger(__name__).info(f"[{type(self).__name__}] {mode}: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train=True):
        return {
            "is_train": is_train,
            "augmentations": build_semantic_augmentations(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "ignore_label": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
        }

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image_file = dataset_dict["file_name"]
        image = read_image(image_file, self.image_format)
        dataset_dict.setdefault("height", image.shape[0])
        dataset_dict.setdefault("width", image.shape[1])

        label = None
        label_file = dataset_dict.get("sem_seg_file_name")
        if label_file is not None:
            label = read_label_map(label_file)
            check_same_size(image, label, image_file, label_file)
            check_label_values(label, self.num_classes, self.ignore_label, label_file)
            if label.dtype != np.uint8:  # detectron2 resizes non-uint8 arrays as float
                label = label.astype(np.float32)

        aug_input = T.AugInput(image, sem_seg=label)
        self.augmentations(aug_input)
        image = aug_input.image
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if label is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(aug_input.sem_seg.astype(np.int64))
        return dataset_dict


def build_semantic_augmentations(cfg, is_train):
    """DeepLab-style training augmentation: random rescale, crop, flip. Test: optional resize."""
    if not is_train:
        if cfg.INPUT.MIN_SIZE_TEST > 0:
            return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)]
        return []
    augmentations = []
    min_scale, max_scale = cfg.INPUT.RANDOM_SCALE
    if (min_scale, max_scale) != (1.0, 1.0):
        augmentations.append(RandomScale(min_scale, max_scale))
    if cfg.INPUT.CROP.ENABLED:
        augmentations.append(
            T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE,
                cfg.INPUT.CROP.SIZE,
                cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
                cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            )
        )
    if cfg.INPUT.RANDOM_FLIP != "none":
        augmentations.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    return augmentations
