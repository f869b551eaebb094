#!/usr/bin/env python
"""
MCC against the same model without its contrast (ToCo-style) and against the plain CAM, with the fully
supervised reference of the same network (docs/mcc.md §17), in one command: by default on the bundled
synthetic data, sized for a CPU.

    python tools/run_mcc_comparison.py --output output/mcc_comparison [--seeds 0 1 2]

Stages (subprocesses of train_net.py, one at a time so that the s/iter are comparable):
  once       mcc_vit_pretrain.yaml: the small ViT trained from scratch as a tag classifier, the synthetic
             stand-in for ImageNet weights (seed 0), shared by every row and seed
  per seed   from those weights, with the same ViT, crops, batch and iterations:
             mcc_vit.yaml (MCC), mcc_vit_toco.yaml (MCC_LOSS_WEIGHT 0), mcc_vit_cam.yaml (classification
             losses only, evaluated by its CAMs with the constant background 0.5) and
             vit_largefov_supervised.yaml (the ViT + LargeFOV on the pixel labels)
Each row reports the val mIoU (wss_synthetic_val) per seed, their mean and spread, the fraction of the
supervised mean and the median s/iter; the comparisons say whether the difference of the means exceeds
the seed-to-seed spread (max - min over seeds) of both rows. Writes <output>/results.json and
<output>/results.md after every seed; finished runs are reused (delete a folder to rerun it), and the
finished seeds' figures are kept in a record (--record, default <output>/seed_record.json; the project
keeps its own in benchmarks/mcc_comparison.json) that a later run, in another session, extends.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wss_d2.utils.pipeline_runs import (  # noqa: E402
    compare_rows, load_seed_record, run_seeds, seed_summary, train, write_comparison_report,
)

SYN = "configs/synthetic"
ROWS = (  # key, config, what it is
    ("supervised", f"{SYN}/vit_largefov_supervised.yaml", "supervised ViT + LargeFOV (pixel labels)"),
    ("mcc", f"{SYN}/mcc_vit.yaml", "MCC"),
    ("toco", f"{SYN}/mcc_vit_toco.yaml", "ToCo-style (MCC without its contrast)"),
    ("cam", f"{SYN}/mcc_vit_cam.yaml", "plain CAM (classification losses only)"),
)
COMPARISONS = (("mcc", "toco"), ("mcc", "cam"), ("toco", "cam"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/mcc_comparison")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--record", default="", help="JSON file of the finished seeds' figures, read and extended "
                        "(default <output>/seed_record.json)")
    parser.add_argument("--num-gpus", type=int, default=1)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides for every training run, last on the line: --opts KEY VALUE ...")
    return parser.parse_args(argv)


def report(out, runs, seeds):
    summary = {key: seed_summary(runs[key]) for key, *_ in ROWS}
    reference = summary["supervised"]["mIoU_mean"]
    for key in summary:
        summary[key]["fraction_of_supervised"] = summary[key]["mIoU_mean"] / reference
    comparisons = [compare_rows(summary, a, b) for a, b in COMPARISONS]
    names = {key: name for key, _, name in ROWS}
    lines = [f"| method | val mIoU, mean of seeds {', '.join(map(str, seeds))} | per seed | of supervised | s/iter |",
             "|---|---:|---|---:|---:|"]
    for key, _, name in ROWS:
        s = summary[key]
        lines.append(f"| {name} | {s['mIoU_mean']:.2f} | " + " / ".join(f"{r['mIoU']:.2f}" for r in runs[key])
                     + f" | {100 * s['fraction_of_supervised']:.0f} % | {s['s_per_iter']:.3f} |")
    return write_comparison_report(out, seeds, summary, runs, comparisons, names, lines)


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.output)
    record_path = os.path.abspath(args.record or os.path.join(out, "seed_record.json"))
    protocol = {"rows": [key for key, *_ in ROWS], "opts": list(args.opts)}
    recorded = load_seed_record(record_path, protocol)
    weights = f"{out}/pretrain/model_final.pth"
    if any(str(seed) not in recorded for seed in args.seeds):
        train(f"{SYN}/mcc_vit_pretrain.yaml", f"{out}/pretrain", "SEED", "0", *args.opts, num_gpus=args.num_gpus)
    configs = {key: config for key, config, _ in ROWS}

    def run_row(key, seed):
        results, s_per_iter = train(configs[key], f"{out}/{key}/seed{seed}", "MODEL.WEIGHTS", weights,
                                    "SEED", str(seed), *args.opts, num_gpus=args.num_gpus)
        return {"seed": seed, "mIoU": results["sem_seg"]["mIoU"], "s_per_iter": s_per_iter}

    return run_seeds(args.seeds, record_path, protocol, list(configs), run_row,
                     lambda runs, seeds: report(out, runs, seeds))


if __name__ == "__main__":
    main()
