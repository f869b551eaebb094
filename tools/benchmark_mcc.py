#!/usr/bin/env python
"""
Benchmark MCC's training step against the supervised step of the same ViT and LargeFOV head with the
same batch and crop, in one run: seconds per iteration (forward, backward, AdamW step; data loading
excluded), the peak memory of each, and where MCC's forward time goes (the no-grad multi-scale CAMs,
the masked views and the contrast, PAR pseudo labels, the energy loss). A benchmark, not a test: it
prints figures and asserts nothing.

    python tools/benchmark_mcc.py                       # synthetic: the small ViT of mcc_vit.yaml
    python tools/benchmark_mcc.py --iters 10 MODEL.MCC.REG.KERNEL exact

MCC runs at an iteration after MODEL.MCC.SEG_START_ITER (every term on). The supervised step is
configs/synthetic/vit_largefov_supervised.yaml's SemanticSegmentor (cross entropy on the upsampled
LargeFOV logits) on the pixel-labelled training set, batches of the same size and crop. Peak memory:
on CPU the growth of the process's peak resident set over each phase (the supervised phase runs
first), on a GPU torch's peak allocation per phase.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from wss_d2 import get_wss_cfg  # noqa: E402
from wss_d2.methods.mcc import meta_arch  # noqa: E402
from wss_d2.solver import build_optimizer  # noqa: E402
from wss_d2.utils.benchmarking import (  # noqa: E402
    PartTimer, emit_figures, method_vs_supervised_arguments, time_training_steps, training_batches,
)

DEFAULT_CONFIG = "configs/synthetic/mcc_vit.yaml"
SUPERVISED_CONFIG = "configs/synthetic/vit_largefov_supervised.yaml"


def main():
    args = method_vs_supervised_arguments(__doc__.split("\n\n")[0], DEFAULT_CONFIG, SUPERVISED_CONFIG)

    setup_logger()
    opts = ["MODEL.WEIGHTS", "", *args.opts]
    cfg = get_wss_cfg(args.config_file, opts)
    sup_cfg = get_wss_cfg(args.supervised_config, opts)
    device = cfg.MODEL.DEVICE
    n = args.warmup + args.iters
    batches, sup_batches = training_batches(cfg, n), training_batches(sup_cfg, n)

    def timed(config, model, batches, iteration, before_timed=None):
        optimizer = build_optimizer(config, model)
        return time_training_steps(model, optimizer, batches, args.warmup, device, iteration, before_timed)

    torch.manual_seed(0)
    supervised_s, supervised_mib = timed(sup_cfg, build_model(sup_cfg), sup_batches, 0)

    torch.manual_seed(0)
    model = build_model(cfg)
    timer = PartTimer(device)
    model.training_cams = timer.wrap("training_cams", model.training_cams)
    model.contrast_loss = timer.wrap("views_and_contrast", model.contrast_loss)
    model.energy_loss.forward = timer.wrap("energy_loss", model.energy_loss.forward)
    original_refine = meta_arch.refine_cams_with_background
    meta_arch.refine_cams_with_background = timer.wrap("par_pseudo_labels", original_refine)
    iteration = cfg.MODEL.MCC.SEG_START_ITER + 1  # every term on

    def start_counting():  # the parts of the warm-up steps are not counted
        timer.counting = True

    mcc_s, mcc_mib = timed(cfg, model, batches, iteration, start_counting)
    meta_arch.refine_cams_with_background = original_refine
    parts = {name: total / args.iters for name, total in timer.totals.items()}

    figures = {
        "config": args.config_file,
        "supervised_config": args.supervised_config,
        "overrides": args.opts,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "backbone": "ViT patch {PATCH_SIZE}, width {EMBED_DIM}, depth {DEPTH}, {NUM_HEADS} heads".format(**cfg.MODEL.VIT),
        "batch": cfg.SOLVER.IMS_PER_BATCH,
        "crop": list(cfg.INPUT.CROP.SIZE),
        "masked_views": cfg.MODEL.MCC.MASK.NUM_LOCAL,
        "energy_kernel": cfg.MODEL.MCC.REG.KERNEL,
        "timed_iterations": args.iters,
        "supervised_s_per_iter": supervised_s,
        "mcc_s_per_iter": mcc_s,
        "mcc_over_supervised": mcc_s / supervised_s,
        "mcc_parts_s_per_iter": parts,
        "mcc_parts_share_of_step": {name: value / mcc_s for name, value in parts.items()},
        "supervised_peak_mib": supervised_mib,
        "mcc_peak_mib": mcc_mib,
        "memory_note": "GPU: torch peak allocation per phase" if device.startswith("cuda")
        else "CPU: growth of the peak RSS over each phase (the supervised phase runs first)",
    }
    emit_figures(figures, args.json)


if __name__ == "__main__":
    main()
