"""
`SemanticPredictor`: a trained wss_d2 model on images that belong to no registered dataset, through the
exact path of `train_net.py --eval-only` (the test mapper, TEST.TTA / BASE_SIZE / sliding window, the
dense CRF of TEST.CRF on the probabilities of the declared `sem_seg_kind`, argmax), so a prediction here
equals the evaluation's prediction of the same image. Used by demo/predict.py.
"""
import os

import numpy as np
import torch

from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model

from ..checkpoint import load_weights_strict
from ..data import build_dataset_mapper
from ..data.datasets import register_datasets_from_config
from ..data.readers import read_image
from .crf import DenseCRF
from .scores import output_sem_seg_kind, to_probabilities
from .tta import maybe_wrap_with_tta

__all__ = ["SemanticPredictor", "metadata_of"]


def metadata_of(cfg):
    """The metadata whose classes and colours the model predicts: DATASETS.TEST's first set, else TRAIN's."""
    names = list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError("The config names no dataset (DATASETS.TEST / TRAIN): its class names and colours are unknown")
    meta = MetadataCatalog.get(names[0])
    if not meta.get("stuff_classes", None):
        raise ValueError(f"Dataset {names[0]!r} has no stuff_classes in its metadata")
    return names[0], meta


class SemanticPredictor:
    """
    predictor(path, tags=None) -> (labels (H, W) int64 at the image's size, the model's output dict).
    `tags`: class ids present in the image, for models that need image tags at inference (CAM
    methods); they become the input's `image_labels`.
    """

    def __init__(self, cfg, weights=None):
        self.cfg = cfg.clone()
        register_datasets_from_config(self.cfg)  # DATASETS.FOLDER / PSEUDO_LABELS, as train_net.py
        self.dataset_name, self.metadata = metadata_of(cfg)
        self.num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        model = build_model(self.cfg)
        load_weights_strict(model, weights or cfg.MODEL.WEIGHTS, source="--weights" if weights else "MODEL.WEIGHTS")
        model.eval()
        self.model = model
        self.inference_model = maybe_wrap_with_tta(self.cfg, model)
        self.mapper = build_dataset_mapper(self.cfg, is_train=False, dataset_names=[self.dataset_name])
        self.crf = DenseCRF(self.cfg) if cfg.TEST.CRF.ENABLED else None

    def inputs_of(self, path, tags=None):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Image {path} does not exist")
        record = {"file_name": path, "image_id": os.path.splitext(os.path.basename(path))[0]}
        inputs = self.mapper(record)
        if tags is not None:
            labels = torch.zeros(self.num_classes)
            bad = [t for t in tags if not 0 <= int(t) < self.num_classes]
            if bad:
                raise ValueError(f"tags {bad} are outside the class ids 0..{self.num_classes - 1}")
            labels[[int(t) for t in tags]] = 1
            inputs["image_labels"] = labels
        return inputs

    @torch.no_grad()
    def __call__(self, path, tags=None):
        inputs = self.inputs_of(path, tags)
        output = self.inference_model([inputs])[0]
        scores = output["sem_seg"]
        if self.crf is None:
            labels = scores.argmax(dim=0).cpu().numpy()
        else:  # as WSSSemSegEvaluator: probabilities of the declared kind, the RGB image from the file
            kind = output_sem_seg_kind(output, where=path)
            probs = to_probabilities(scores.detach().cpu(), kind).numpy()
            labels = self.crf(read_image(path, "RGB"), probs).argmax(0)
        return np.asarray(labels, dtype=np.int64), output
