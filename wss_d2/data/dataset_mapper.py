"""
The one wss_d2 dataset mapper. It reads an image with every label source its dataset dict
names (dense GT, pseudo labels, sparse scribble/point/click maps, JSON points, boxes, image
tags, CAMs), applies the same geometric augmentation to all of them, and emits them under
stable field names:

    image           (C, H, W) uint8, `image_format` channel order
    height, width   the original image size (predictions are returned at this size)
    sem_seg         (H, W) int64 dense target: the GT, else the pseudo label; 0..K-1, 255 =
                    ignore. Weak-shot datasets: novel-class pixels are 255.
    sparse_sem_seg  (H, W) int64, the internal sparse convention of SPML and AGMM:
                    0..K-1 labelled, K = unlabelled image content, 255 = void or padding
    points          (N, 3) float32 (x, y, class) in the augmented image, x = column and
                    y = row as pixel indices (pixel (r, c) holds the points with
                    floor(y + 0.5) = r, floor(x + 0.5) = c)
    image_labels    (K,) float32 multi-hot of the classes present; the background class
                    (if the dataset has one) counts as present. Sparse labels without tags:
                    the classes labelled anywhere in the whole, un-augmented image (AGMM's c)
    instances       detectron2 Instances with gt_boxes (XYXY, clipped to the crop) and
                    gt_classes (label values); boxes cropped away are dropped
    cams, cam_labels  (C, H, W) float32 class activation maps and their (C,) label values
    overseg         (H, W) int64 region ids of the image's over-segmentation (INPUT.WEAK.OVERSEG,
                    from the dict's overseg_file_name): resampled with the image by nearest
                    neighbour, flipped with it (ids are never remapped), 255 on padding
    valid_mask      (H, W) bool, False on padding added by INPUT.CROP.PAD
    full_sem_seg    (H, W) int64, weak-shot training with INPUT.WEAK.KEEP_FULL_LABEL only: the crop's GT
                    with its novel pixels (SimFormer's original class-balance counts, docs/simformer.md §3.4)
    partner         with INPUT.PAIRS.ENABLED (training): another training image's fields, drawn from the
                    partner table (wss_d2.data.pairs; docs/simformer.md §5), never the image itself

MCC's views (docs/mcc.md §2), with INPUT.MULTI_VIEW.ENABLED (training only, off by default):
"image" becomes global view 1 (its own flip, jitter, grayscale, blur of the padded crop), plus
"local_view" (same crop) and "global_view2" (a RandomResizedCrop of the un-rescaled image), all
(3, H, W) uint8 RGB of the crop size; "img_box" int64 [h0, h1, w0, w1] (end exclusive) the
non-padded region before the main view's flip (quirk Q1; INPUT.MULTI_VIEW.FLIP_BOX mirrors it);
"main_flipped", "local_flipped" bools. The main view's flip is also applied to every label and
to valid_mask, so those stay aligned with "image" (img_box alone keeps the quirk).

SPML's inputs (docs/spml.md §3, §4.1), all off by default: INPUT.SPARSE.SCRIBBLE_DILATION /
POINT_DILATION dilate scribbles / points with a k×k square on the full-size map before
augmentation (SPML: 3 and 6; dilated points are then resampled like scribbles);
INPUT.WEAK.TAGS_FROM_FULL_LABEL gives image_labels from the whole un-augmented weak-label
map, dense labels included (CAM-derived labels of tags and boxes, weak_label "cam_labels").

Sparse labels never go through interpolation. Points and clicks are moved as coordinates:
every labelled pixel lands on exactly one output pixel, so none is lost by down-scaling or
copied by up-scaling (two may merge when down-scaling puts them in one pixel). Scribbles
are resized with nearest neighbour (keeping their strokes connected when up-scaled) and
their labelled pixels are then also placed as coordinates, so thin strokes survive
down-scaling. Dense maps use nearest neighbour.
"""
import copy
import functools
import logging

import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.structures import BoxMode, Boxes, Instances

from .augmentation import (
    PHOTOMETRIC_TRANSFORMS,
    ColorAugSSD,
    RandomBlur,
    RandomGrayscale,
    RandomLongSide,
    RandomScale,
    StrongPhotometric,
)
from .build import DATASET_MAPPER_REGISTRY
from .multi_view import MultiViewAugmentation
from .sparse_label_check import resolve_sparse_values
from .config import weak_label_input_value
from .readers import check_label_values, check_same_size, read_image, read_label_map
from .weak_labels.cams import read_irn_cams
from .weak_labels.dilation import dilate_sparse_labels
from .weak_labels.kinds import REGION_KINDS, SCATTERED_KINDS, SPARSE_KINDS
from .weak_labels.overseg import read_overseg
from .weak_labels.points import drop_points_outside, rasterize_points

__all__ = ["WeakLabelDatasetMapper", "build_semantic_augmentations", "resolve_weak_label_metadata"]

logger = logging.getLogger(__name__)

# draws of a partner before giving up when partners keep having empty weak labels
MAX_PARTNER_TRIES = 10

# Metadata fields that change how the mapper reads labels; every training dataset of one run
# must agree on them (one mapper serves all of them).
_MAPPER_METADATA = (
    "background_class",
    "weak_label",
    "sparse_unlabeled_value",
    "sparse_void_value",
    "novel_classes",
    "flip_label_map",
)


def resolve_weak_label_metadata(dataset_names):
    """The mapper-relevant metadata shared by `dataset_names`, or a clear error if they differ."""
    resolved = {}
    for name in dataset_names:
        meta = MetadataCatalog.get(name)
        values = {key: _freeze(meta.get(key, None)) for key in _MAPPER_METADATA}
        if not resolved:
            resolved, first = values, name
            continue
        for key in _MAPPER_METADATA:
            if values[key] != resolved[key]:
                raise ValueError(
                    f"Datasets {first} and {name} disagree on metadata '{key}' "
                    f"({resolved[key]!r} vs {values[key]!r}); one mapper cannot read both. "
                    "Train on datasets with the same label conventions."
                )
    return resolved


def _freeze(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


@DATASET_MAPPER_REGISTRY.register()
class WeakLabelDatasetMapper:
    """
    Map a dataset dict to model input (fields in the module docstring). Every label is
    checked against the image size and the class range, naming the file. A training image
    whose weak label is empty (no tags, no labelled sparse pixel, no point, no box, an
    all-ignore pseudo label) is skipped with a warning or raises, by `on_empty`.
    """

    @configurable
    def __init__(
        self,
        is_train=True,
        *,
        augmentations,
        image_format,
        num_classes,
        ignore_label=255,
        background_class=0,
        weak_label="full",
        sparse_unlabeled_value=None,
        sparse_void_value=255,
        novel_classes=(),
        flip_label_map=None,
        tags_from_crop=False,
        on_empty="skip",
        point_radius=1,
        pad_to_size=None,
        pad_image_value=0.0,
        pad_position="bottom_right",
        overseg=False,
        tags_from_full_label=False,
        scribble_dilation=0,
        point_dilation=0,
        multi_view=None,
        keep_full_label=False,
        pairs=None,
    ):
        if pad_position not in ("bottom_right", "random"):
            raise ValueError(f"pad_position (INPUT.CROP.PAD_POSITION) must be 'bottom_right' or 'random', got {pad_position!r}")
        if on_empty not in ("skip", "error"):
            raise ValueError(f"on_empty must be 'skip' or 'error', got {on_empty!r}")
        if not 0 < num_classes < ignore_label:
            raise ValueError(f"num_classes must be in 1..{ignore_label - 1} (the unlabelled value K < ignore)")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.background_class = background_class
        self.weak_label = weak_label
        self.sparse_unlabeled_value = num_classes if sparse_unlabeled_value is None else sparse_unlabeled_value
        self.sparse_void_value = sparse_void_value
        self.novel_classes = np.asarray(sorted(novel_classes or ()), dtype=np.int64)
        self.flip_label_map = None if flip_label_map is None else _label_lookup(flip_label_map)
        self.tags_from_crop = tags_from_crop
        self.on_empty = on_empty
        self.point_radius = point_radius
        self.pad_to_size = pad_to_size
        self.pad_image_value = pad_image_value
        self.pad_position = pad_position
        self.overseg = overseg
        self.tags_from_full_label = tags_from_full_label
        self.scribble_dilation = int(scribble_dilation or 0)
        self.point_dilation = int(point_dilation or 0)
        self.multi_view = multi_view if is_train else None
        self.keep_full_label = keep_full_label
        # when training on pairs: (PartnerSampler, the training dicts, file_name -> index), or a callable
        # building it on first use (in the process that maps: reading the training set's labels is not
        # paid by a mapper that is only built, e.g. for an evaluation)
        self._pairs = pairs if is_train else None
        mode = "training" if is_train else "inference"
        logger.info(f"[{type(self).__name__}] {mode}, weak label '{weak_label}': {augmentations}")
        if weak_label in SPARSE_KINDS:
            logger.info(
                f"[{type(self).__name__}] sparse labels: raw unlabelled {self.sparse_unlabeled_value} -> "
                f"{num_classes} (unlabelled = K), raw void {self.sparse_void_value} -> {ignore_label} (void); "
                f"dilation: scribbles {self.scribble_dilation or 'off'}, points {self.point_dilation or 'off'}"
            )
        if overseg:
            logger.info(f"[{type(self).__name__}] reading over-segmentations (overseg_file_name), padding {ignore_label}")

    @classmethod
    def from_config(cls, cfg, is_train=True, dataset_names=None):
        if dataset_names is None:
            dataset_names = cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST
        meta = resolve_weak_label_metadata(dataset_names) if dataset_names else {}
        unlabeled, void = resolve_sparse_values(cfg, meta)
        crop = cfg.INPUT.CROP
        return {
            "is_train": is_train,
            "augmentations": build_semantic_augmentations(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "ignore_label": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "background_class": meta.get("background_class", 0),
            "weak_label": meta.get("weak_label") or "full",
            "sparse_unlabeled_value": unlabeled,
            "sparse_void_value": void,
            # evaluation sets carry base/novel metadata too, but only weak-shot training hides novel pixels
            "novel_classes": (meta.get("novel_classes") or ()) if meta.get("weak_label") == "weak_shot" else (),
            "flip_label_map": meta.get("flip_label_map"),
            "tags_from_crop": cfg.INPUT.WEAK.TAGS_FROM_CROP,
            "on_empty": cfg.INPUT.WEAK.ON_EMPTY,
            "point_radius": cfg.INPUT.SPARSE.POINT_RADIUS,
            "pad_to_size": tuple(crop.SIZE) if is_train and crop.ENABLED and crop.PAD else None,
            "pad_image_value": crop.PAD_IMAGE_VALUE,
            "pad_position": crop.PAD_POSITION,
            "overseg": weak_label_input_value(cfg, "WEAK", "OVERSEG"),
            "tags_from_full_label": weak_label_input_value(cfg, "WEAK", "TAGS_FROM_FULL_LABEL"),
            "scribble_dilation": weak_label_input_value(cfg, "SPARSE", "SCRIBBLE_DILATION"),
            "point_dilation": weak_label_input_value(cfg, "SPARSE", "POINT_DILATION"),
            "multi_view": _build_multi_view(cfg, is_train, tuple(crop.SIZE) if crop.ENABLED and crop.PAD else None),
            "keep_full_label": cfg.INPUT.WEAK.KEEP_FULL_LABEL,
            "pairs": functools.partial(_build_pairs, cfg.clone(), tuple(dataset_names), meta)
            if is_train and cfg.INPUT.PAIRS.ENABLED else None,
        }

    # ----------------------------------------------------------------------------- reading
    def _read_dense(self, dataset_dict, image=None):
        """GT or pseudo label (pseudo wins: it is the training target when both exist)."""
        label_file = dataset_dict.get("pseudo_sem_seg_file_name") or dataset_dict.get("sem_seg_file_name")
        if label_file is None:
            return None, None
        label = read_label_map(label_file)
        if image is not None:
            check_same_size(image, label, dataset_dict["file_name"], label_file)
        check_label_values(label, self.num_classes, self.ignore_label, label_file)
        return label.astype(np.uint8), label_file

    def _read_sparse(self, dataset_dict, image=None):
        """A scribble/point/click PNG in the internal convention (K unlabelled, 255 void)."""
        label_file = dataset_dict.get("sparse_sem_seg_file_name")
        if label_file is None:
            return None
        raw = read_label_map(label_file)
        if image is not None:
            check_same_size(image, raw, dataset_dict["file_name"], label_file)
        K = self.num_classes
        unlabeled = raw == self.sparse_unlabeled_value
        void = raw == self.sparse_void_value if self.sparse_void_value is not None else np.zeros_like(unlabeled)
        bad = (raw >= K) & ~unlabeled & ~void
        if bad.any():
            raise ValueError(
                f"Sparse label {label_file} has values {np.unique(raw[bad])[:10].tolist()} that are "
                f"neither class ids 0..{K - 1}, the unlabelled value {self.sparse_unlabeled_value} "
                f"nor the void value {self.sparse_void_value}. If the file uses 255 for unlabelled "
                "pixels (rloss/TEL style), set INPUT.SPARSE.UNLABELED_RAW 255."
            )
        sparse = raw.astype(np.uint8)
        sparse[unlabeled] = K
        sparse[void] = self.ignore_label
        return sparse

    def _read_overseg(self, dataset_dict, image):
        """The over-segmentation as uint8 region ids, or None when not asked for (or, at
        inference, when the dict has none)."""
        if not self.overseg:
            return None
        overseg_file = dataset_dict.get("overseg_file_name")
        if overseg_file is None:
            if not self.is_train:
                return None
            raise ValueError(
                f"Image {dataset_dict['file_name']} has no overseg_file_name but INPUT.WEAK.OVERSEG is on: "
                "train on a set registered with over-segmentations (docs/datasets.md §3.6), or write them "
                "with datasets/make_weak_labels.py --kinds overseg"
            )
        return read_overseg(overseg_file, image.shape, dataset_dict["file_name"]).astype(np.uint8)

    def _dilation(self):
        """The dilation size of this dataset's sparse labels (0: none)."""
        if self.weak_label == "scribbles":
            return self.scribble_dilation
        if self.weak_label == "points":
            return self.point_dilation
        return 0

    def _check_tags(self, dataset_dict):
        tags = dataset_dict.get("image_labels")
        if tags is None:
            return None
        tags = np.asarray(tags, dtype=np.int64).reshape(-1)
        self._check_class_ids(tags, "image_labels", dataset_dict)
        return tags

    def _check_class_ids(self, values, what, dataset_dict):
        """Raise, naming the image, if `values` are not integer class ids 0..K-1."""
        if ((values < 0) | (values >= self.num_classes) | (values != np.round(values))).any():
            raise ValueError(
                f"Image {dataset_dict.get('image_id', dataset_dict['file_name'])}: {what} "
                f"{np.unique(values)[:10].tolist()} outside the class ids 0..{self.num_classes - 1}"
            )

    def _read_points(self, dataset_dict):
        points = dataset_dict.get("points")
        if points is None:
            return None
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        self._check_class_ids(points[:, 2], "point classes", dataset_dict)
        return points

    def _read_boxes(self, dataset_dict):
        annotations = dataset_dict.get("annotations")
        if annotations is None:
            return None
        boxes = np.zeros((len(annotations), 4), dtype=np.float64)
        classes = np.zeros(len(annotations), dtype=np.int64)
        for i, ann in enumerate(annotations):
            boxes[i] = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYXY_ABS)
            classes[i] = ann["category_id"]
        self._check_class_ids(classes, "box category_id", dataset_dict)
        return boxes, classes

    def _empty_weak_label(self, dataset_dict, dense, dense_file, sparse, tags, points, boxes):
        """A description of why this image has no usable weak label, or None."""
        K = self.num_classes
        if tags is not None and len(tags) == 0:
            return "no image tags"
        if sparse is not None and not (sparse < K).any():
            return f"no labelled pixel in {dataset_dict['sparse_sem_seg_file_name']}"
        if points is not None and len(points) == 0 and sparse is None:
            return "no points"
        if boxes is not None and len(boxes[0]) == 0:
            return "no boxes"
        if dense is not None and not (dense != self.ignore_label).any():
            return f"every pixel of {dense_file} is ignore ({self.ignore_label})"
        return None

    def empty_weak_label_reason(self, dataset_dict):
        """
        Why training would skip this dict (its weak label is empty), or None. Reads the label
        files only, not the image: the pre-training check of a whole set uses it.
        """
        dense, dense_file = self._read_dense(dataset_dict)
        sparse = self._read_sparse(dataset_dict)
        return self._empty_weak_label(
            dataset_dict, dense, dense_file, sparse, self._check_tags(dataset_dict),
            self._read_points(dataset_dict), self._read_boxes(dataset_dict),
        )

    @property
    def pairs(self):
        if callable(self._pairs):
            self._pairs = self._pairs()
        return self._pairs

    # ------------------------------------------------------------------------------ call
    def __call__(self, dataset_dict):
        mapped = self.map_image(dataset_dict)
        if mapped is None or self.pairs is None:
            return mapped
        sampler, dicts, index_of = self.pairs
        index = index_of.get(dataset_dict["file_name"])
        if index is None:
            raise ValueError(f"{dataset_dict['file_name']} is not an image of the partner table's training set")
        for _ in range(MAX_PARTNER_TRIES):
            partner = self.map_image(dicts[sampler(index)])
            if partner is not None:  # None: the partner's weak label was empty (skipped)
                mapped["partner"] = partner
                return mapped
        raise RuntimeError(f"No usable partner for {dataset_dict['file_name']} in {MAX_PARTNER_TRIES} draws")

    def map_image(self, dataset_dict):
        """One image's fields (the module docstring), without a partner."""
        dataset_dict = copy.deepcopy(dataset_dict)
        image_file = dataset_dict["file_name"]
        image = read_image(image_file, self.image_format)
        original = image  # global view 2 starts from the un-rescaled image
        dataset_dict.setdefault("height", image.shape[0])
        dataset_dict.setdefault("width", image.shape[1])

        dense, dense_file = self._read_dense(dataset_dict, image)
        sparse = self._read_sparse(dataset_dict, image)
        tags = self._check_tags(dataset_dict)
        points = self._read_points(dataset_dict)
        boxes = self._read_boxes(dataset_dict)
        overseg = self._read_overseg(dataset_dict, image)
        cams = None
        if dataset_dict.get("cam_file_name"):
            cam_labels, cams = read_irn_cams(dataset_dict["cam_file_name"], self.background_class)
            check_same_size(image, cams[0], image_file, dataset_dict["cam_file_name"])

        if self.is_train:
            reason = self._empty_weak_label(dataset_dict, dense, dense_file, sparse, tags, points, boxes)
            if reason is not None:
                message = f"Image {image_file} has an empty weak label ({reason})"
                if self.on_empty == "error":
                    raise ValueError(message + "; set INPUT.WEAK.ON_EMPTY skip to skip such images")
                logger.warning(message + "; skipped (INPUT.WEAK.ON_EMPTY skip)")
                return None

        if tags is None and dense is not None and len(self.novel_classes) and not self.tags_from_crop:
            # weak-shot: novel classes are known from image tags, i.e. the classes of the GT
            tags = np.unique(dense[(dense < self.num_classes) & (dense != self.background_class)])
        if points is not None:
            points = drop_points_outside(points, image.shape[0], image.shape[1])[0]
        if sparse is not None:  # SPML dilates on the full-size map (docs/spml.md §3.3, §3.4)
            sparse = dilate_sparse_labels(sparse, self._dilation(), self.num_classes)
        # before any crop (docs/agmm.md §1.4, docs/spml.md §3.6)
        full_dense = dense if self.tags_from_full_label and not len(self.novel_classes) else None
        labelled_classes = self._labelled_classes(sparse, points, full_dense)

        # Labelled sparse pixels become coordinates (centres at +0.5 in detectron2's
        # continuous coordinates) so that no interpolation can drop or copy them.
        scattered = None
        if sparse is not None and self.weak_label not in REGION_KINDS:
            rows, cols = np.nonzero(sparse < self.num_classes)
            scattered = np.stack([cols + 0.5, rows + 0.5, sparse[rows, cols]], axis=1).astype(np.float64)

        guide = dense
        if guide is None and sparse is not None:  # crop constraints count labelled pixels only
            guide = np.where(sparse < self.num_classes, sparse, self.ignore_label).astype(np.uint8)
        aug_input = T.AugInput(image, sem_seg=guide)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        h, w = image.shape[:2]
        flipped = any(isinstance(t, T.HFlipTransform) for t in transforms)

        if dense is not None:
            dense = aug_input.sem_seg if guide is dense else transforms.apply_segmentation(dense)
        if sparse is not None:
            sparse = self._transform_sparse(sparse, scattered, transforms, h, w)
        if points is not None:
            moved = points.copy()
            moved[:, :2] += 0.5
            points = self._move_points(moved, transforms, h, w)
            points[:, :2] -= 0.5
            if sparse is None:  # methods read sparse_sem_seg whatever the source format
                sparse = rasterize_points(points, h, w, unlabeled_value=self.num_classes, radius=self.point_radius)
                # JSON points are placed after augmentation, so their square is k px in the crop
                sparse = dilate_sparse_labels(sparse, self.point_dilation, self.num_classes)
        if boxes is not None:
            boxes = self._transform_boxes(boxes, transforms, h, w)
        if cams is not None:  # the geometry only: colour changes are for the image
            geometric = T.TransformList([t for t in transforms if not isinstance(t, PHOTOMETRIC_TRANSFORMS)])
            cams = geometric.apply_image(np.ascontiguousarray(cams.transpose(1, 2, 0)))
            cams = cams.reshape(h, w, -1).transpose(2, 0, 1)
        if overseg is not None:  # nearest, like every label map; region ids are not remapped on a flip
            overseg = transforms.apply_segmentation(overseg).astype(np.uint8)

        if flipped and self.flip_label_map is not None:  # left/right classes swap (DensePose)
            dense, sparse = (None if m is None else self.flip_label_map[m] for m in (dense, sparse))
            if points is not None:
                points[:, 2] = self.flip_label_map[points[:, 2].astype(np.int64)]
            if boxes is not None:
                boxes = (boxes[0], self.flip_label_map[boxes[1]].astype(np.int64))

        image_labels = self._image_labels(tags, dense, sparse, points, boxes, labelled_classes)

        valid_mask = np.ones((h, w), dtype=bool)
        if self.pad_to_size is not None:
            image, dense, sparse, cams, valid_mask, shift, overseg = self._pad(
                image, dense, sparse, cams, valid_mask, overseg
            )
            if points is not None:
                points[:, :2] += shift
            if boxes is not None:
                boxes = (boxes[0] + np.tile(shift, 2), boxes[1])

        if self.multi_view is not None:
            views = self.multi_view(image, original, valid_mask)
            if views["main_flipped"]:
                dense, sparse, cams, valid_mask, overseg, points, boxes = self._flip_labels(
                    valid_mask.shape[1], dense, sparse, cams, valid_mask, overseg, points, boxes
                )
            dataset_dict.update(views)
        else:
            dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if dense is not None and len(self.novel_classes):
            if self.keep_full_label:  # SimFormer's official class-balance counts only (docs/simformer.md §3.4)
                dataset_dict["full_sem_seg"] = torch.as_tensor(dense.astype(np.int64))
            # weak-shot: novel classes are known from tags only, never from pixels
            dense = np.where(np.isin(dense, self.novel_classes), self.ignore_label, dense).astype(np.uint8)
        dataset_dict["valid_mask"] = torch.as_tensor(valid_mask)
        if dense is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(dense.astype(np.int64))
        if sparse is not None:
            dataset_dict["sparse_sem_seg"] = torch.as_tensor(sparse.astype(np.int64))
        if points is not None:
            dataset_dict["points"] = torch.as_tensor(points, dtype=torch.float32)
        if image_labels is not None:
            dataset_dict["image_labels"] = torch.as_tensor(image_labels)
        if boxes is not None:
            instances = Instances((h, w))
            instances.gt_boxes = Boxes(torch.as_tensor(boxes[0], dtype=torch.float32).reshape(-1, 4))
            instances.gt_classes = torch.as_tensor(boxes[1], dtype=torch.int64)
            dataset_dict["instances"] = instances
        if cams is not None:
            dataset_dict["cams"] = torch.as_tensor(np.ascontiguousarray(cams), dtype=torch.float32)
            dataset_dict["cam_labels"] = torch.as_tensor(cam_labels, dtype=torch.int64)
        if overseg is not None:
            dataset_dict["overseg"] = torch.as_tensor(overseg.astype(np.int64))
        return dataset_dict

    # ------------------------------------------------------------------------- transforms
    def _flip_labels(self, w, dense, sparse, cams, valid_mask, overseg, points, boxes):
        """The main view's second horizontal flip (after padding) applied to every label."""
        dense, sparse, valid_mask, overseg = (None if m is None else np.ascontiguousarray(m[:, ::-1])
                                              for m in (dense, sparse, valid_mask, overseg))
        if cams is not None:
            cams = np.ascontiguousarray(cams[:, :, ::-1])
        if points is not None:  # pixel-index x: column c goes to w - 1 - c
            points = points.copy()
            points[:, 0] = w - 1 - points[:, 0]
        if boxes is not None:  # continuous XYXY
            coords = boxes[0].copy()
            coords[:, [0, 2]] = w - boxes[0][:, [2, 0]]
            boxes = (coords, boxes[1])
        if self.flip_label_map is not None:
            dense, sparse = (None if m is None else self.flip_label_map[m] for m in (dense, sparse))
            if points is not None:
                points[:, 2] = self.flip_label_map[points[:, 2].astype(np.int64)]
            if boxes is not None:
                boxes = (boxes[0], self.flip_label_map[boxes[1]].astype(np.int64))
        return dense, sparse, cams, valid_mask, overseg, points, boxes

    def _move_points(self, points, transforms, h, w):
        """Apply `transforms` to (x, y, class) rows in continuous coordinates; keep those inside."""
        if len(points) == 0:
            return points.astype(np.float32)
        # float32 first: a coordinate just below the border (111.99999999) rounds to it (112.0)
        xy = transforms.apply_coords(points[:, :2].copy()).astype(np.float32)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        return np.concatenate([xy, points[:, 2:].astype(np.float32)], axis=1)[inside]

    def _transform_sparse(self, sparse, scattered, transforms, h, w):
        if self.weak_label in REGION_KINDS:  # CAM-derived region labels: nearest, like dense maps
            return transforms.apply_segmentation(sparse).astype(np.uint8)
        if self.weak_label in SCATTERED_KINDS and not self._dilation():
            # void (255) still follows the image geometry; labelled pixels are placed below
            out = transforms.apply_segmentation(np.where(sparse < self.num_classes, self.num_classes, sparse))
            out = out.astype(np.uint8)
        else:
            out = transforms.apply_segmentation(sparse).astype(np.uint8)
        moved = self._move_points(scattered, transforms, h, w)
        cols, rows = np.floor(moved[:, 0]).astype(np.int64), np.floor(moved[:, 1]).astype(np.int64)
        out[rows, cols] = moved[:, 2].astype(np.uint8)
        return out

    def _transform_boxes(self, boxes, transforms, h, w):
        coords, classes = boxes
        if len(coords) == 0:
            return coords.astype(np.float32), classes
        moved = transforms.apply_box(coords.copy())
        moved[:, 0::2] = moved[:, 0::2].clip(0, w)
        moved[:, 1::2] = moved[:, 1::2].clip(0, h)
        keep = (moved[:, 2] > moved[:, 0]) & (moved[:, 3] > moved[:, 1])
        return moved[keep].astype(np.float32), classes[keep]

    def _labelled_classes(self, sparse, points, dense=None):
        """Classes with a labelled sparse pixel, a point, or (if given) a dense label in the full
        image, or None."""
        if sparse is None and points is None and dense is None:
            return None
        classes = [] if sparse is None else [np.unique(sparse[sparse < self.num_classes])]
        if dense is not None:
            classes.append(np.unique(dense[dense < self.num_classes]))
        if points is not None:
            classes.append(points[:, 2].astype(np.int64))
        return np.unique(np.concatenate(classes)).astype(np.int64)

    def _image_labels(self, tags, dense, sparse, points, boxes, labelled_classes=None):
        """
        (K,) multi-hot: the dataset's tags, or with tags_from_crop the classes in the crop, or
        for sparse labels without tags the classes labelled in the whole image.
        """
        K = self.num_classes
        present = None
        if self.tags_from_crop:
            present = np.zeros(K, dtype=bool)
            if dense is not None:
                present[dense[dense < K]] = True
            if sparse is not None:
                present[sparse[sparse < K]] = True
            if points is not None:
                present[points[:, 2].astype(np.int64)] = True
            if boxes is not None:
                present[boxes[1]] = True
            if self.background_class is not None and boxes is not None:
                present[self.background_class] = True  # outside the boxes
        elif tags is not None:
            present = np.zeros(K, dtype=bool)
            present[tags] = True
            if self.background_class is not None:
                present[self.background_class] = True
        elif labelled_classes is not None:
            present = np.zeros(K, dtype=bool)
            present[labelled_classes] = True
        elif not self.is_train and dense is not None:
            # evaluation on a fully labelled split: the image's GT tags, the standard WSSS
            # protocol for CAM methods (docs/sipe.md §1.3); never at training time
            present = np.zeros(K, dtype=bool)
            present[dense[dense < K]] = True
            if self.background_class is not None:
                present[self.background_class] = True
        return None if present is None else present.astype(np.float32)

    def _pad(self, image, dense, sparse, cams, valid_mask, overseg=None):
        """
        Pad to the crop size, bottom/right or around a random offset (pad_position); padding
        is ignore in labels, False in valid_mask. Also returns the (x, y) shift of the content.
        """
        h, w = image.shape[:2]
        ph, pw = max(self.pad_to_size[0] - h, 0), max(self.pad_to_size[1] - w, 0)
        if ph == 0 and pw == 0:
            return image, dense, sparse, cams, valid_mask, np.zeros(2), overseg
        top = left = 0
        if self.pad_position == "random":  # SIPE: a small image sits anywhere in the crop
            top, left = np.random.randint(ph + 1), np.random.randint(pw + 1)
        spec2 = ((top, ph - top), (left, pw - left))
        image = np.pad(image, spec2 + ((0, 0),), constant_values=self.pad_image_value)
        if dense is not None:
            dense = np.pad(dense, spec2, constant_values=self.ignore_label)
        if sparse is not None:
            sparse = np.pad(sparse, spec2, constant_values=self.ignore_label)
        if cams is not None:
            cams = np.pad(cams, ((0, 0),) + spec2)
        if overseg is not None:
            overseg = np.pad(overseg, spec2, constant_values=self.ignore_label)
        valid_mask = np.pad(valid_mask, spec2, constant_values=False)
        return image, dense, sparse, cams, valid_mask, np.array([left, top], dtype=np.float64), overseg


def _build_pairs(cfg, dataset_names, meta):
    """(PartnerSampler, training dicts, file_name -> index) of INPUT.PAIRS (docs/simformer.md §5)."""
    from detectron2.data import get_detection_dataset_dicts

    from .pairs import PartnerSampler, build_partner_table, check_partner_table, load_partner_table

    names = list(dataset_names)
    dicts = get_detection_dataset_dicts(names, filter_empty=False)
    novel = meta.get("novel_classes") or ()
    pairs = cfg.INPUT.PAIRS
    if pairs.TABLE:
        table = load_partner_table(pairs.TABLE)
        check_partner_table(table, names, dicts, novel, where=f"Partner table {pairs.TABLE}")
    else:
        logger.info(f"Building the partner table of {names} in memory ({len(dicts)} images)")
        table = build_partner_table(names, dicts, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, novel,
                                    tuple(pairs.MAX_CANDIDATES), ignore_value=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE)
    sampler = PartnerSampler(table, pairs.RAREST_FOCUS_PROB, pairs.MAX_CANDIDATES[0])
    return sampler, dicts, {d["file_name"]: i for i, d in enumerate(dicts)}


def _build_multi_view(cfg, is_train, crop_size):
    """MCC's view pipelines when INPUT.MULTI_VIEW.ENABLED (training only), else None."""
    node = cfg.INPUT.get("MULTI_VIEW", None)
    if not is_train or node is None or not node.ENABLED:
        return None
    return MultiViewAugmentation.from_config(cfg, crop_size)


def _label_lookup(mapping):
    """A 256-entry lookup table applying `mapping` (list: value i -> mapping[i]) to label maps."""
    table = np.arange(256, dtype=np.int64)
    table[: len(mapping)] = mapping
    return table.astype(np.uint8)


def build_semantic_augmentations(cfg, is_train):
    """DeepLab-style training augmentation: random rescale, crop, flip, optional strong colour
    changes (INPUT.STRONG_PHOTOMETRIC), then optional grayscale and blur (INPUT.RANDOM_GRAYSCALE,
    INPUT.RANDOM_BLUR, SPML's stage C). Test: optional resize."""
    if not is_train:
        if cfg.INPUT.MIN_SIZE_TEST > 0:
            return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)]
        return []
    augmentations = []
    min_scale, max_scale = cfg.INPUT.RANDOM_SCALE
    if len(cfg.INPUT.RANDOM_LONG_SIDE):
        if len(cfg.INPUT.RANDOM_LONG_SIDE) != 2:
            raise ValueError(f"INPUT.RANDOM_LONG_SIDE must be [] or [min, max]; got {list(cfg.INPUT.RANDOM_LONG_SIDE)}")
        augmentations.append(RandomLongSide(*cfg.INPUT.RANDOM_LONG_SIDE))
    elif (min_scale, max_scale) != (1.0, 1.0) and not cfg.INPUT.RESIZE_SHORTEST_EDGE:
        augmentations.append(RandomScale(min_scale, max_scale))
    if cfg.INPUT.RESIZE_SHORTEST_EDGE:  # MaskFormer / SimFormer: detectron2's MIN_SIZE_TRAIN keys
        augmentations.append(
            T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)
        )
    if cfg.INPUT.CROP.ENABLED:
        augmentations.append(
            T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE,
                cfg.INPUT.CROP.SIZE,
                cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
                cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            )
        )
    if cfg.INPUT.COLOR_AUG_SSD:  # before the flip, as MaskFormer
        augmentations.append(ColorAugSSD(cfg.INPUT.FORMAT))
    if cfg.INPUT.RANDOM_FLIP != "none":
        augmentations.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    if cfg.INPUT.STRONG_PHOTOMETRIC:
        augmentations.append(StrongPhotometric())
    # SPML's stage-C colour changes (docs/spml.md §4.2), only when on: off, nothing else draws differently
    grayscale = cfg.INPUT.get("RANDOM_GRAYSCALE", 0.0)
    if grayscale > 0:
        augmentations.append(RandomGrayscale(grayscale, cfg.INPUT.FORMAT))
    blur = cfg.INPUT.get("RANDOM_BLUR", 0.0)
    if blur > 0:
        augmentations.append(
            RandomBlur(blur, cfg.INPUT.get("RANDOM_BLUR_SIGMA", (0.1, 5.0)), cfg.INPUT.get("RANDOM_BLUR_SIZE", 5))
        )
    return augmentations
