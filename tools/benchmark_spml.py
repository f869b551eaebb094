#!/usr/bin/env python
"""
Benchmark SPML's stage-A training step against a supervised step with the same backbone,
embedding head, batch and crop, in one run: seconds per iteration (forward, backward, optimizer
step; data loading excluded, both steps see the same batches) and the peak memory of each. A
benchmark, not a test: it prints figures and asserts nothing.

    python tools/benchmark_spml.py                                  # synthetic scribbles, R18
    python tools/benchmark_spml.py --config-file configs/synthetic/spml_R18_points.yaml --iters 30

The supervised step is the stage-A network (backbone + embedding head) with a 1x1 classifier on
the embedding and cross entropy on the labelled pixels, logits upsampled to the crop: what SPML
adds on top of it is the k-means segment formation, the gather, the memory bank, the contrastive
relations and the detached auxiliary classifier. Peak memory: on CPU the growth of the process's
peak resident set over each phase (the supervised phase runs first), on a GPU torch's peak
allocation per phase.
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.modeling import build_backbone, build_model, build_sem_seg_head  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from wss_d2 import get_wss_cfg  # noqa: E402
from wss_d2.engine import Trainer  # noqa: E402
from wss_d2.modeling.batching import stack_crops  # noqa: E402
from wss_d2.modeling.normalization import normalize_images  # noqa: E402
from wss_d2.utils.benchmarking import emit_figures, time_training_steps  # noqa: E402

DEFAULT_CONFIG = "configs/synthetic/spml_R18_scribbles.yaml"


class SupervisedStep(nn.Module):
    """The stage-A network with a 1x1 classifier on the embedding, trained by cross entropy."""

    def __init__(self, cfg):
        super().__init__()
        self.backbone = build_backbone(cfg)
        self.sem_seg_head = build_sem_seg_head(cfg, self.backbone.output_shape())
        self.num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        self.classifier = nn.Conv2d(cfg.MODEL.SPML.EMBED_DIM, self.num_classes, 1)
        self.register_buffer("pixel_mean", torch.tensor(cfg.MODEL.PIXEL_MEAN).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(cfg.MODEL.PIXEL_STD).view(-1, 1, 1), False)

    def forward(self, batched_inputs):
        images = normalize_images(stack_crops(batched_inputs, "image"), self.pixel_mean, self.pixel_std)
        key = "sparse_sem_seg" if "sparse_sem_seg" in batched_inputs[0] else "sem_seg"
        labels = stack_crops(batched_inputs, key).to(images.device)
        labels = torch.where(labels >= self.num_classes, torch.full_like(labels, 255), labels)
        embedding = self.sem_seg_head(self.backbone(images))
        logits = F.interpolate(self.classifier(embedding), size=labels.shape[-2:], mode="bilinear", align_corners=False)
        return {"loss_ce": F.cross_entropy(logits, labels, ignore_index=255)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--iters", type=int, default=20, help="timed iterations per step (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()

    setup_logger()
    cfg = get_wss_cfg(args.config_file, args.opts)
    device = cfg.MODEL.DEVICE
    loader = iter(Trainer.build_train_loader(cfg))
    batches = [next(loader) for _ in range(args.warmup + args.iters)]

    def timed(model):
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
        return time_training_steps(model, optimizer, batches, args.warmup, device)

    torch.manual_seed(0)
    supervised_s, supervised_mib = timed(SupervisedStep(cfg).to(device))
    torch.manual_seed(0)
    spml_s, spml_mib = timed(build_model(cfg))
    figures = {
        "config": args.config_file,
        "overrides": args.opts,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "backbone": f"ResNet-{cfg.MODEL.RESNETS.DEPTH}",
        "batch": cfg.SOLVER.IMS_PER_BATCH,
        "crop": list(cfg.INPUT.CROP.SIZE),
        "timed_iterations": args.iters,
        "supervised_s_per_iter": supervised_s,
        "spml_s_per_iter": spml_s,
        "spml_over_supervised": spml_s / supervised_s,
        "supervised_peak_mib": supervised_mib,
        "spml_peak_mib": spml_mib,
        "memory_note": "GPU: torch peak allocation per phase" if device.startswith("cuda")
        else "CPU: growth of the peak RSS over each phase (the supervised phase runs first)",
    }
    emit_figures(figures, args.json)


if __name__ == "__main__":
    main()
