#!/usr/bin/env python
"""
AGMM against partial cross-entropy (docs/agmm.md §8.4) in one command, with the table of README
"AGMM on the synthetic data": by default on the bundled synthetic data, sized for a CPU.

    python tools/run_agmm_comparison.py --output output/agmm_comparison

Every config is trained once per seed (train_net.py, one subprocess at a time, so the
s/iter are comparable); the first config is the fully supervised reference. Single runs
on the synthetic data differ by several mIoU between seeds, hence the seeds: each row
reports the mean val mIoU, the spread over seeds, the fraction of the reference's mean,
and the median s/iter. Writes <output>/results.json and <output>/results.md; a finished
run is reused (delete its folder to rerun it).
"""
import argparse
import os

from wss_d2.utils.pipeline_runs import seed_summary, train, write_report

WHOLE_SCRIBBLES = ("DATASETS.TRAIN", "('wss_synthetic_train_scribbles',)")
CONFIGS = [
    # (output folder, labels, loss, config, overrides): the same network and budget throughout
    ("full", "dense", "cross entropy (supervised reference)", "configs/synthetic/agmm_R18_full.yaml", ()),
    ("pce_points", "points", "partial CE", "configs/synthetic/pce_R18_points.yaml", ()),
    ("agmm_points", "points", "AGMM", "configs/synthetic/agmm_R18_points.yaml", ()),
    ("pce_scribbles", "scribbles, 30 % of the length", "partial CE", "configs/synthetic/pce_R18_scribbles.yaml", ()),
    ("agmm_scribbles", "scribbles, 30 % of the length", "AGMM", "configs/synthetic/agmm_R18_scribbles.yaml", ()),
    ("pce_whole_scribbles", "whole scribbles", "partial CE", "configs/synthetic/pce_R18_scribbles.yaml",
     WHOLE_SCRIBBLES),
    ("agmm_whole_scribbles", "whole scribbles", "AGMM", "configs/synthetic/agmm_R18_scribbles.yaml",
     WHOLE_SCRIBBLES),
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/agmm_comparison")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-gpus", type=int, default=1)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides for every run, last on the line: --opts KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.output)
    rows = []
    for name, labels, loss, config, overrides in CONFIGS:
        runs = []
        for seed in args.seeds:
            results, s_per_iter = train(config, f"{out}/{name}/seed{seed}", *overrides, "SEED", str(seed),
                                        *args.opts, num_gpus=args.num_gpus)
            runs.append({"seed": seed, "mIoU": results["sem_seg"]["mIoU"], "s_per_iter": s_per_iter})
        rows.append({"labels": labels, "loss": loss, "config": config, "overrides": list(overrides), "runs": runs,
                     **seed_summary(runs)})
    reference = rows[0]["mIoU_mean"]
    for row in rows:
        row["fraction_of_supervised"] = row["mIoU_mean"] / reference
    seeds = ", ".join(map(str, args.seeds))
    table = "\n".join(
        [f"| labels | loss | val mIoU, mean of seeds {seeds} | per seed | of supervised | s/iter | config |",
         "|---|---|---:|---|---:|---:|---|"]
        + [f"| {r['labels']} | {r['loss']} | {r['mIoU_mean']:.2f} | "
           + " / ".join(f"{x['mIoU']:.2f}" for x in r["runs"])
           + f" | {100 * r['fraction_of_supervised']:.0f} % | {r['s_per_iter']:.3f} | `{os.path.basename(r['config'])}` |"
           for r in rows]
    )
    write_report(out, rows, table)
    return rows


if __name__ == "__main__":
    main()
