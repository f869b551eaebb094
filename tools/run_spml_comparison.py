#!/usr/bin/env python
"""
SPML against the naive baseline of each weak-label kind (docs/spml.md §11.3) in one command,
with the table of README "SPML on the synthetic data": by default on the bundled synthetic
data, sized for a CPU.

    python tools/run_spml_comparison.py --output output/spml_comparison

Stages (subprocesses of train_net.py, tools/export_pseudo_labels.py, datasets/make_cam_labels.py;
one at a time, so the s/iter are comparable):
  CAMs   once, shared by every seed and by both methods: a tag classifier from scratch (the synthetic
         stand-in for ImageNet weights), SIPE from it, SIPE's CAMs of the training images, and SPML's
         CAM-derived per-pixel labels for tags and boxes (datasets/make_cam_labels.py). With --cams,
         a finished folder of CAMs (tools/export_pseudo_labels.py --save-cams) replaces the first three.
  per seed, per kind (tags, boxes, scribbles, points):
    SPML   A: spml_R18_<kind>.yaml; B: --source spml_softmax_rw pseudo labels of the training images
           (tags use the boxes/scribbles/points generator here, not the two VOC rounds, for the budget);
           C/T: spml_R18_classifier.yaml on the frozen stage-A embedding, val mIoU
    naive  spml_R18_pce.yaml: the same network trained end to end with partial cross entropy on the
           same per-pixel labels (dilated scribbles and points, CAM labels for tags and boxes), stage
           A's budget; for tags and boxes also DeepLabV3+ ResNet-18 (pce_R18_points.yaml, the same 300
           iterations) on the same CAM labels
  per seed: the fully supervised references, spml_R18_pce.yaml and DeepLabV3+ on the dense labels
Each row reports the mean val mIoU over seeds, the spread (min..max), the fraction of its network's
supervised mean, and the median s/iter (SPML: stage A). Seeds run in the outer loop, so a run
stopped early leaves whole seeds; every finished stage is reused (delete its folder to rerun it).
Writes <output>/results.json and <output>/results.md after every seed (the seeds finished so far).

The full run (3 seeds) takes longer than one working session on a 2-core CPU, so the finished seeds'
figures are also kept in a small record (--record, by default <output>/seed_record.json; the project
keeps its own in benchmarks/spml_comparison.json): a later run with the same record skips the seeds it
holds (no training, and no CAM stage when every asked seed is recorded) and reports them with the new
ones. The record refuses to mix protocols: kinds, DeepLab rows, --cams and --opts must match.
"""
import argparse
import json
import os
import statistics
import sys

from wss_d2.utils.pipeline_runs import REPO, load_seed_record, run_once, save_seed_record, seed_summary, train, write_report

SYN = "configs/synthetic"
KINDS = ("tags", "boxes", "scribbles", "points")
CAM_KINDS = {"tags": "wss_synthetic_train_tags", "boxes": "wss_synthetic_train_boxes"}  # kind: source split
TRAIN_SETS = {"scribbles": "wss_synthetic_train_scribbles", "points": "wss_synthetic_train_points"}
GT = "wss_synthetic_train"
DEEPLAB = f"{SYN}/pce_R18_points.yaml"  # DeepLabV3+ R18 (OS 16) with partial CE
DEEPLAB_ITERS = ("SOLVER.MAX_ITER", "300", "SOLVER.CHECKPOINT_PERIOD", "300")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/spml_comparison")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--cams", default="", help="a folder of <image_id>.npy CAMs of the training images "
                        "(skips the tag classifier and SIPE)")
    parser.add_argument("--no-deeplab", action="store_true", help="leave out the DeepLabV3+ rows")
    parser.add_argument("--record", default="", help="JSON file of the finished seeds' figures, read and "
                        "extended (default <output>/seed_record.json)")
    parser.add_argument("--num-gpus", type=int, default=1)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides for every training run, last on the line: --opts KEY VALUE ...")
    return parser.parse_args(argv)


def cam_labels(args, out, make=True):
    """{kind: [DATASETS.PSEUDO_LABELS entry]} of the CAM-derived training labels for tags and boxes;
    `make` runs the stages that write them (False: only their names, for recorded seeds)."""
    kinds = [k for k in args.kinds if k in CAM_KINDS]
    if not kinds:
        return {}
    cams = os.path.abspath(args.cams) if args.cams else f"{out}/cams/sipe_cams"
    if make and not args.cams:
        train(f"{SYN}/tag_classifier_R18.yaml", f"{out}/cams/pretrain", *args.opts, num_gpus=args.num_gpus)
        train(f"{SYN}/sipe_R18.yaml", f"{out}/cams/sipe", "MODEL.WEIGHTS", f"{out}/cams/pretrain/model_final.pth",
              *args.opts, num_gpus=args.num_gpus)
        labels = f"{out}/cams/sipe_labels"
        run_once([sys.executable, "tools/export_pseudo_labels.py", "--config-file", f"{SYN}/sipe_R18.yaml",
                "--weights", f"{out}/cams/sipe/model_final.pth", "--dataset", CAM_KINDS["tags"], "--source", "cams",
                "--save-cams", cams, "--output", labels, "--gt-dataset", GT],
               os.path.join(labels, "pseudo_label_quality.json"), labels + ".log")
    entries = {}
    for kind in kinds:
        folder = f"{out}/cams/cam_labels_{kind}"
        if make:
            run_once([sys.executable, "datasets/make_cam_labels.py", "--cams", cams, "--dataset", CAM_KINDS[kind],
                    "--kind", kind, "--output", folder], os.path.join(folder, "cam_labels.json"), folder + ".log")
        entries[kind] = [f"wss_synthetic_train_spml_cam_{kind}", CAM_KINDS[kind], folder]
    return entries


def training_set(kind, cam_entries):
    """(name of the per-pixel training labels, overrides registering them)."""
    if kind in cam_entries:
        return cam_entries[kind][0], ("DATASETS.PSEUDO_LABELS", json.dumps([cam_entries[kind]]))
    return TRAIN_SETS[kind], ()


def spml(kind, seed, root, cam_entries, args):
    """Stages A, B, C/T; returns (stage-C results, stage-A s/iter, pseudo-label quality)."""
    name, registration = training_set(kind, cam_entries)
    config = f"{SYN}/spml_R18_{kind}.yaml"
    common = (*registration, "DATASETS.TRAIN", f"('{name}',)", "SEED", str(seed))
    _, s_per_iter = train(config, f"{root}/stage_a", *common, *args.opts, num_gpus=args.num_gpus)
    weights = f"{root}/stage_a/model_final.pth"
    pseudo = f"{root}/pseudo"
    run_once([sys.executable, "tools/export_pseudo_labels.py", "--config-file", config, "--weights", weights,
            "--dataset", name, "--source", "spml_softmax_rw", "--output", pseudo, "--gt-dataset", GT,
            "--second-stage-config", os.path.join(REPO, SYN, "spml_R18_classifier.yaml"),
            "--second-stage-output", f"{root}/stage_c", "--name", f"wss_synthetic_train_spml_{kind}_seed{seed}_pseudo",
            *registration], os.path.join(pseudo, "pseudo_label_quality.json"), pseudo + ".log")
    with open(os.path.join(pseudo, "pseudo_label_quality.json")) as f:
        quality = json.load(f)
    results, _ = train(f"{pseudo}/second_stage.yaml", f"{root}/stage_c", "MODEL.WEIGHTS", weights,
                       "SEED", str(seed), *args.opts, num_gpus=args.num_gpus)
    return results, s_per_iter, quality


def rows_of(args, out, cam_entries):
    """[(row key, labels, method, network, run(seed) -> (results, s/iter, extra))] in table order."""
    rows = []

    def plain(config, folder, *overrides):
        return lambda seed: (*train(config, f"{out}/{folder}/seed{seed}", *overrides, "SEED", str(seed), *args.opts,
                                    num_gpus=args.num_gpus), None)

    rows.append(("supervised", "dense", "cross entropy (supervised reference)", "spml",
                 plain(f"{SYN}/spml_R18_pce.yaml", "supervised", "DATASETS.TRAIN", f"('{GT}',)")))
    if not args.no_deeplab and cam_entries:
        rows.append(("supervised_deeplab", "dense", "cross entropy (supervised reference)", "deeplab",
                     plain(DEEPLAB, "supervised_deeplab", "DATASETS.TRAIN", f"('{GT}',)", *DEEPLAB_ITERS)))
    for kind in args.kinds:
        name, registration = training_set(kind, cam_entries)
        labels = f"{kind} ({'CAM labels' if kind in cam_entries else 'dilated'})"
        rows.append((f"spml_{kind}", labels, "SPML (A, B, C)", "spml",
                     lambda seed, kind=kind: spml(kind, seed, f"{out}/spml_{kind}/seed{seed}", cam_entries, args)))
        rows.append((f"pce_{kind}", labels, "partial CE (naive)", "spml",
                     plain(f"{SYN}/spml_R18_pce.yaml", f"pce_{kind}", *registration, "DATASETS.TRAIN", f"('{name}',)")))
        if kind in cam_entries and not args.no_deeplab:
            rows.append((f"deeplab_{kind}", labels, "partial CE (naive)", "deeplab",
                         plain(DEEPLAB, f"deeplab_{kind}", *registration, "DATASETS.TRAIN", f"('{name}',)",
                               *DEEPLAB_ITERS)))
    return rows


NETWORKS = {"spml": "SPML's R18 OS 8 + embedding head", "deeplab": "DeepLabV3+ R18"}


def report(out, rows, runs, seeds):
    """Write results.json/results.md from the seeds finished so far; returns the figures."""
    figures = []
    for key, labels, method, network, _ in rows:
        figures.append({"key": key, "labels": labels, "method": method, "network": NETWORKS[network],
                        "runs": runs[key], **seed_summary(runs[key])})
    reference = {f["network"]: f["mIoU_mean"] for f in figures if f["labels"] == "dense"}
    for f in figures:
        f["fraction_of_supervised"] = f["mIoU_mean"] / reference[f["network"]]
        pseudo = [r["pseudo_label_mIoU"] for r in f["runs"] if "pseudo_label_mIoU" in r]
        if pseudo:
            f["pseudo_label_mIoU_mean"] = statistics.mean(pseudo)
    seeds = ", ".join(map(str, seeds))
    table = "\n".join(
        [f"| labels | method | network | val mIoU, mean of seeds {seeds} | per seed | of supervised | "
         "stage-B label mIoU (train) | s/iter |",
         "|---|---|---|---:|---|---:|---:|---:|"]
        + [f"| {f['labels']} | {f['method']} | {f['network']} | {f['mIoU_mean']:.2f} | "
           + " / ".join(f"{r['mIoU']:.2f}" for r in f["runs"])
           + f" | {100 * f['fraction_of_supervised']:.0f} % | "
           + (f"{f['pseudo_label_mIoU_mean']:.2f}" if "pseudo_label_mIoU_mean" in f else "")
           + f" | {f['s_per_iter']:.3f} |"
           for f in figures]
    )
    os.makedirs(out, exist_ok=True)
    write_report(out, figures, table)
    return figures


def protocol_of(args):
    """What must match for two runs' seeds to share one table."""
    return {"kinds": list(args.kinds), "deeplab": not args.no_deeplab, "cams": bool(args.cams),
            "opts": list(args.opts)}


def main(argv=None):
    args = parse_args(argv)
    out = os.path.abspath(args.output)
    record_path = os.path.abspath(args.record or os.path.join(out, "seed_record.json"))
    protocol = protocol_of(args)
    recorded = load_seed_record(record_path, protocol)
    todo = [seed for seed in args.seeds if str(seed) not in recorded]
    cam_entries = cam_labels(args, out, make=bool(todo))
    rows = rows_of(args, out, cam_entries)
    runs = {key: [] for key, *_ in rows}
    figures = []
    finished = []
    for seed in args.seeds:  # whole seeds first: a stopped run leaves complete seeds
        if str(seed) in recorded:
            entries = recorded[str(seed)]
            missing = [key for key, *_ in rows if key not in entries]
            if missing:
                raise SystemExit(f"{record_path}: seed {seed} has no row {', '.join(missing)}")
        else:
            entries = {}
            for key, *_, run_seed in rows:
                results, s_per_iter, quality = run_seed(seed)
                entries[key] = {"seed": seed, "mIoU": results["sem_seg"]["mIoU"], "s_per_iter": s_per_iter}
                if quality is not None:
                    entries[key]["pseudo_label_mIoU"] = quality["mIoU"]
            recorded[str(seed)] = entries
            save_seed_record(record_path, protocol, recorded)
        for key in runs:
            runs[key].append(entries[key])
        finished.append(seed)
        # the report of the seeds finished so far, so a run stopped later still leaves its table
        figures = report(out, rows, runs, finished)
    return figures


if __name__ == "__main__":
    main()
