#!/usr/bin/env python
"""
SimFormer against weak-shot training without similarity transfer (base-only), with the fully supervised
MaskFormer upper bound of the same network (docs/simformer.md §9), in one command: by default on the
bundled synthetic weak-shot split (base classes 0-3 with masks, novel 4 and 5 from tags), sized for a CPU.

    python tools/run_simformer_comparison.py --output output/simformer_comparison [--seeds 0 1 2]

Rows (subprocesses of train_net.py, one at a time so that the s/iter are comparable), per seed, the same
ResNet-18 MaskFormer, crops, 8 images per iteration and iterations:
  supervised   maskformer_R18_full.yaml: pixel labels of every class (the upper bound)
  base_only    simformer_R18_base_only.yaml: base masks + novel tags, no complementary or similarity term
  official     simformer_R18.yaml: SimFormer as the original (per-crop tags and full-label balance counts
               read novel pixels)
  strict       simformer_R18_strict.yaml: SimFormer reading no novel pixel label
Each row reports mIoU, base and novel mIoU and their harmonic mean on wss_synthetic_val_ws per seed, their
means and spreads, and the median s/iter; the comparisons say whether a difference of the means exceeds
the seed-to-seed spread (max - min over seeds) of both rows. Writes <output>/results.json and
<output>/results.md after every seed; finished runs are reused, and the finished seeds' figures are kept
in a record (--record, default <output>/seed_record.json; the project keeps its own in
benchmarks/simformer_comparison.json) that a later run extends.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wss_d2.utils.pipeline_runs import (  # noqa: E402
    compare_rows, run_seeds, seed_summary, train, write_comparison_report,
)

SYN = "configs/synthetic"
ROWS = (  # key, config, what it is
    ("supervised", f"{SYN}/maskformer_R18_full.yaml", "supervised MaskFormer (pixel labels of every class)"),
    ("base_only", f"{SYN}/simformer_R18_base_only.yaml", "base-only (base masks + novel tags)"),
    ("official", f"{SYN}/simformer_R18.yaml", "SimFormer, official (reads novel pixels for crop tags and counts)"),
    ("strict", f"{SYN}/simformer_R18_strict.yaml", "SimFormer, strict (no novel pixel label)"),
)
METRICS = ("mIoU", "mIoU-base", "mIoU-novel", "hIoU")
COMPARISONS = (("official", "base_only", "mIoU-novel"), ("strict", "base_only", "mIoU-novel"),
               ("official", "strict", "mIoU-novel"), ("strict", "base_only", "hIoU"),
               ("official", "base_only", "hIoU"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/simformer_comparison")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--record", default="", help="JSON file of the finished seeds' figures, read and extended "
                        "(default <output>/seed_record.json)")
    parser.add_argument("--num-gpus", type=int, default=1)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides for every training run, last on the line: --opts KEY VALUE ...")
    return parser.parse_args(argv)


def report(out, runs, seeds):
    summary = {key: seed_summary(runs[key], METRICS) for key, *_ in ROWS}
    comparisons = [compare_rows(summary, a, b, metric) for a, b, metric in COMPARISONS]
    names = {key: name for key, _, name in ROWS}
    lines = [f"| method | mIoU | base mIoU | novel mIoU | hIoU | novel mIoU per seed ({', '.join(map(str, seeds))}) "
             "| s/iter |", "|---|---:|---:|---:|---:|---|---:|"]
    for key, _, name in ROWS:
        s = summary[key]
        lines.append(f"| {name} | " + " | ".join(f"{s[f'{m}_mean']:.2f}" for m in METRICS) + " | "
                     + " / ".join(f"{r['mIoU-novel']:.2f}" for r in runs[key]) + f" | {s['s_per_iter']:.3f} |")
    return write_comparison_report(out, seeds, summary, runs, comparisons, names, lines)


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.output)
    record_path = os.path.abspath(args.record or os.path.join(out, "seed_record.json"))
    protocol = {"rows": [key for key, *_ in ROWS], "opts": list(args.opts)}
    configs = {key: config for key, config, _ in ROWS}

    def run_row(key, seed):
        results, s_per_iter = train(configs[key], f"{out}/{key}/seed{seed}", "SEED", str(seed), *args.opts,
                                    num_gpus=args.num_gpus)
        return {"seed": seed, "s_per_iter": s_per_iter, **{m: results["sem_seg"][m] for m in METRICS}}

    return run_seeds(args.seeds, record_path, protocol, list(configs), run_row,
                     lambda runs, seeds: report(out, runs, seeds))


if __name__ == "__main__":
    main()
