#!/usr/bin/env python
"""
Benchmark the supervised DeepLabV3+ baseline: seconds per training iteration, peak memory,
and the val mIoU reached after the run. A benchmark, not a test: it prints figures and
asserts nothing.

    python tools/benchmark_baseline.py                      # the main job's config
    python tools/benchmark_baseline.py --config-file CONFIG SOLVER.MAX_ITER 200

Peak memory is the process's peak resident set size (CPU) and, on a GPU, the peak memory
allocated by torch. Timings exclude the first 10 iterations (warm-up) and evaluation.
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detectron2.utils.logger import setup_logger  # noqa: E402

from wss_d2 import get_wss_cfg  # noqa: E402
from wss_d2.engine import Trainer  # noqa: E402

DEFAULT_CONFIG = "configs/synthetic/deeplabv3plus_R18.yaml"
WARMUP_ITERS = 10


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()

    setup_logger(name="fvcore")
    setup_logger()
    with tempfile.TemporaryDirectory(prefix="wss_d2_bench_") as output_dir:
        cfg = get_wss_cfg(args.config_file, [*args.opts, "OUTPUT_DIR", output_dir])
        if cfg.MODEL.DEVICE.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=False)
        start = time.perf_counter()
        results = trainer.train()
        wall = time.perf_counter() - start

    step_times = [t for t, it in trainer.storage.history("time").values() if it >= WARMUP_ITERS]
    figures = {
        "config": args.config_file,
        "overrides": args.opts,
        "device": cfg.MODEL.DEVICE,
        "torch_threads": torch.get_num_threads(),
        "backbone": f"ResNet-{cfg.MODEL.RESNETS.DEPTH}",
        "output_stride": getattr(trainer.model, "module", trainer.model).backbone.size_divisibility,
        "batch": cfg.SOLVER.IMS_PER_BATCH,
        "crop": list(cfg.INPUT.CROP.SIZE),
        "iterations": cfg.SOLVER.MAX_ITER,
        "s_per_iter": sum(step_times) / max(len(step_times), 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_s_train_and_eval": wall,
        "val_mIoU": results["sem_seg"]["mIoU"] if results else None,
    }
    if cfg.MODEL.DEVICE.startswith("cuda"):
        figures["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
