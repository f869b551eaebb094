#!/usr/bin/env python
"""
Benchmark SimFormer's training step against the supervised MaskFormer step of the same backbone, batch
and crop, in one run: seconds per iteration (forward, backward, AdamW step with the full-model clipping;
data loading excluded), the peak memory of each, and where SimFormer's time goes (the Hungarian
matching of every layer, the complementary loss, the pair losses and, inside them, the similarity net
and the distillation). A benchmark, not a test: it prints figures and asserts nothing.

    python tools/benchmark_simformer.py                  # synthetic: simformer_R18.yaml vs maskformer_R18_full.yaml
    python tools/benchmark_simformer.py --iters 10 MODEL.SIMFORMER.BASE_POINTS 50

SimFormer's batch is SOLVER.IMS_PER_BATCH pairs (2 images each); the supervised batch is set to the same
number of images. Peak memory: on CPU the growth of the process's peak resident set over each phase (the
supervised phase runs first), on a GPU torch's peak allocation per phase.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from wss_d2 import get_wss_cfg  # noqa: E402
from wss_d2.solver import build_optimizer  # noqa: E402
from wss_d2.utils.benchmarking import (  # noqa: E402
    PartTimer, emit_figures, method_vs_supervised_arguments, time_training_steps, training_batches,
)

DEFAULT_CONFIG = "configs/synthetic/simformer_R18.yaml"
SUPERVISED_CONFIG = "configs/synthetic/maskformer_R18_full.yaml"


def main():
    args = method_vs_supervised_arguments(__doc__.split("\n\n")[0], DEFAULT_CONFIG, SUPERVISED_CONFIG)

    setup_logger()
    opts = ["MODEL.WEIGHTS", "", *args.opts]
    cfg = get_wss_cfg(args.config_file, opts)
    images = cfg.SOLVER.IMS_PER_BATCH * (2 if cfg.INPUT.PAIRS.ENABLED else 1)
    sup_cfg = get_wss_cfg(args.supervised_config, [*opts, "SOLVER.IMS_PER_BATCH", str(images)])
    device = cfg.MODEL.DEVICE
    n = args.warmup + args.iters
    batches, sup_batches = training_batches(cfg, n), training_batches(sup_cfg, n)

    def timed(config, model, batches, before_timed=None):
        optimizer = build_optimizer(config, model)
        return time_training_steps(model, optimizer, batches, args.warmup, device, 0, before_timed)

    torch.manual_seed(0)
    supervised_s, supervised_mib = timed(sup_cfg, build_model(sup_cfg), sup_batches)

    torch.manual_seed(0)
    model = build_model(cfg)
    timer = PartTimer(device)
    criterion = model.criterion
    criterion.matcher.forward = timer.wrap("hungarian_matching", criterion.matcher.forward)
    criterion.loss_comp = timer.wrap("complementary_loss", criterion.loss_comp)
    if model.needs_pairs:
        model.pair_losses = timer.wrap("pair_losses", model.pair_losses)
        simnet = criterion.cro_pixel_sim_net
        simnet.forward = timer.wrap("similarity_net_forward", simnet.forward)
        if model.distill_weight:
            model.distillation = timer.wrap("distillation", model.distillation)

    def start_counting():  # the parts of the warm-up steps are not counted
        timer.counting = True

    simformer_s, simformer_mib = timed(cfg, model, batches, start_counting)
    parts = {name: total / args.iters for name, total in timer.totals.items()}
    resnet = cfg.MODEL.RESNETS
    mf = cfg.MODEL.MASK_FORMER
    figures = {
        "config": args.config_file,
        "supervised_config": args.supervised_config,
        "overrides": args.opts,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "backbone": f"ResNet-{resnet.DEPTH}, transformer width {mf.HIDDEN_DIM}, {mf.DEC_LAYERS} decoder layers, "
                    f"{mf.NUM_OBJECT_QUERIES} queries",
        "images_per_batch": images,
        "crop": list(cfg.INPUT.CROP.SIZE),
        "timed_iterations": args.iters,
        "supervised_s_per_iter": supervised_s,
        "simformer_s_per_iter": simformer_s,
        "simformer_over_supervised": simformer_s / supervised_s,
        "simformer_parts_s_per_iter": parts,
        "simformer_parts_share_of_step": {name: value / simformer_s for name, value in parts.items()},
        "supervised_peak_mib": supervised_mib,
        "simformer_peak_mib": simformer_mib,
        "memory_note": "GPU: torch peak allocation per phase" if device.startswith("cuda")
        else "CPU: growth of the peak RSS over each phase (the supervised phase runs first)",
    }
    emit_figures(figures, args.json)


if __name__ == "__main__":
    main()
