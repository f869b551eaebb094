#!/usr/bin/env python
"""
Export pseudo labels: run a trained model (its segmentation, or its CAMs) over a split and
write one label PNG per image in the dataset's own format (raw class indices, 255 = ignore),
optionally refined by dense CRF (over all cores) and cut by a confidence threshold. It then
writes a config for the second stage, so fully supervised training on the pseudo labels is
one command:

    python tools/export_pseudo_labels.py --config-file configs/synthetic/deeplabv3plus_R18.yaml \\
        --dataset wss_synthetic_train --weights output/synthetic/deeplabv3plus_R18/model_final.pth \\
        --output pseudo/ --crf --threshold 0.5
    python train_net.py --config-file pseudo/second_stage.yaml

Outputs in --output: <image_id>.png, pseudo_label_quality.json (mIoU of the pseudo labels
against the GT, when the source split has GT or --gt-dataset names one), second_stage.yaml
(_BASE_ = --second-stage-config, DATASETS.PSEUDO_LABELS registering the PNGs as --name,
DATASETS.TRAIN = (--name,), OUTPUT_DIR = --second-stage-output, by default <output>_second_stage
beside the labels, so the second stage never overwrites the first stage's checkpoints). Config
options (TEST.TTA.*, TEST.CRF.*) follow the command.

The model's `sem_seg` is turned into probabilities by the kind the model declares (softmax of
logits, AGMM's probabilities as they are, CAM-like scores divided by their sum;
wss_d2.inference.scores) before the CRF and --threshold.

--source cams gives foreground-only CAMs the constant background score
TEST.EXPORT.CAM_BACKGROUND_SCORE (0.15; formerly --bg-threshold). The refinement itself
(probabilities, tag restriction, CRF labels, confident regions, quality) is wss_d2.refinement.

SPML's stage-B generators (docs/spml.md §9.4; wss_d2.refinement.spml_generators) are sources of
their own: the model is a stage-A SPMLEmbedder (outputs "embedding" and "sem_seg"), run at the
generator's scales and flips without TEST.TTA, and the generator's own class masking, random walk and
CRF (TEST.CRF.*, whose defaults are SPML's) replace --restrict-to-tags and --crf:

    spml_softmax_rw       (a) boxes, scribbles, points: softmax + random walk + CRF
    spml_cam_rw           (b) tags, round 1: the CAMs of --dataset (a DATASETS.CAMS registration)
                          + random walk + CRF
    spml_knn              (c) tags: k-NN segment retrieval in the segments of --memory-dataset
                          (a registered split with pseudo labels, e.g. DATASETS.PSEUDO_LABELS) + CRF
    spml_softmax_rw1      (d) tags, round 2: softmax + one random-walk step, no CRF
    spml_densepose_nn_rw  (e) DensePose points: nearest labelled prototype + random walk + CRF,
                          the point map's void pixels kept 255

    python tools/export_pseudo_labels.py --config-file configs/voc/spml_R101_scribbles.yaml \\
        --dataset voc_2012_train_aug_scribbles --weights output/spml/stage_a/model_final.pth \\
        --source spml_softmax_rw --output pseudo/spml_scribbles

--num-gpus N runs the export on N processes (the training launcher: one GPU each, or GLOO processes on
CPU), each on every N-th image with its own CRF pool; the labels, CAMs and the quality report equal a
one-process export's.

--output and --save-cams are written to temporary sibling folders that replace the targets only
when the export has finished, so a failed export leaves no partial folder and an earlier
complete one intact (wss_d2.utils.atomic_folder). An existing target is replaced only if it
holds nothing but what an export writes.
"""
import argparse
import logging
import os
import shlex
import shutil

logger = logging.getLogger("wss_d2.export")

QUALITY_FILE = "pseudo_label_quality.json"
SECOND_STAGE_FILE = "second_stage.yaml"
# what an export writes into --output and --save-cams: a folder holding only these may be replaced
LABEL_FOLDER_FILES = (".png", QUALITY_FILE, SECOND_STAGE_FILE)
CAM_FOLDER_FILES = (".npy",)


def spml_sources():
    """{--source name: help} of SPML's stage-B generators (wss_d2.refinement.spml_generators)."""
    from wss_d2.refinement.spml_generators import SPML_SOURCES

    return {name: entry[3] for name, entry in SPML_SOURCES.items()}


def parse_args(argv=None):
    spml = spml_sources()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="config of the trained model")
    parser.add_argument("--dataset", required=True, help="registered split to label (its images are used)")
    parser.add_argument("--output", required=True, help="folder for <image_id>.png and second_stage.yaml")
    parser.add_argument("--weights", default="", help="checkpoint (default: MODEL.WEIGHTS)")
    parser.add_argument("--source", choices=["sem_seg", "cams", *spml], default="sem_seg",
                        help="the model's segmentation scores, or its CAMs (outputs 'cams', 'cam_labels'), or one "
                             "of SPML's stage-B generators: " + "; ".join(f"{k}: {v}" for k, v in spml.items()))
    parser.add_argument("--memory-dataset", default="",
                        help="--source spml_knn: registered split whose pseudo labels (sem_seg) label the k-NN memory")
    # a former flag, now the config key TEST.EXPORT.CAM_BACKGROUND_SCORE (refused with a hint)
    parser.add_argument("--bg-threshold", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--restrict-to-tags", action="store_true",
                        help="keep only the image's tagged classes (and background) in the scores")
    parser.add_argument("--crf", action="store_true", help="refine with dense CRF (TEST.CRF.* parameters)")
    parser.add_argument("--weak-shot", action="store_true",
                        help="SimFormer's second stage on a weak-shot split (docs/simformer.md §6): keep the "
                             "prediction only on the image's novel tags, put the split's base GT on top, 255 elsewhere")
    parser.add_argument("--ir-labels", action="store_true",
                        help="--source cams with a background channel (SIPE): confident-region labels "
                             "{0, class, 255} by dense CRF (TEST.IR_LABELS.*, docs/sipe.md §7.1)")
    parser.add_argument("--save-cams", default="",
                        help="also write each image's CAMs (<image_id>.npy, SIPE/IRN format) to this folder")
    parser.add_argument("--threshold", type=float, default=0.0,
                        help="pixels whose top probability is below this become 255 (ignore)")
    parser.add_argument("--name", default="", help="registered name of the pseudo-label set (default <dataset>_pseudo_export)")
    parser.add_argument("--second-stage-config", default="", help="_BASE_ of second_stage.yaml (default: --config-file)")
    parser.add_argument("--second-stage-output", default="",
                        help="OUTPUT_DIR of second_stage.yaml (default: <output>_second_stage)")
    parser.add_argument("--gt-dataset", default="", help="split with the GT of the same images, for the quality report")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes (GPUs, or CPU processes over GLOO)")
    parser.add_argument("--max-images", type=int, default=0,
                        help="label only the first N images of --dataset, for a quick look (no second_stage.yaml: "
                             "a second stage needs every image); 0 = all")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    args = parser.parse_args(argv)
    if args.source in spml:
        if args.crf or args.restrict_to_tags or args.ir_labels or args.save_cams:
            parser.error(f"--source {args.source} runs its own class masking and CRF: drop --crf, "
                         "--restrict-to-tags, --ir-labels and --save-cams")
        if (args.source == "spml_knn") != bool(args.memory_dataset):
            parser.error("--memory-dataset goes with --source spml_knn (and it needs one)")
    elif args.memory_dataset:
        parser.error("--memory-dataset goes with --source spml_knn")
    if args.bg_threshold is not None:
        raise SystemExit(
            "--bg-threshold is now the config key TEST.EXPORT.CAM_BACKGROUND_SCORE: pass "
            f"TEST.EXPORT.CAM_BACKGROUND_SCORE {args.bg_threshold} after the other options"
        )
    return args


def second_stage_output_dir(args, cfg, exported):
    """
    OUTPUT_DIR of the second stage: --second-stage-output or <output>_second_stage; never a
    folder of the first stage's checkpoints (its OUTPUT_DIR, the --weights folder) nor one in
    `exported` ({absolute folder: flag}, the folders this export replaces).
    """
    from wss_d2 import get_wss_cfg

    output = os.path.abspath(os.path.expanduser(args.output))
    target = os.path.abspath(os.path.expanduser(args.second_stage_output or output + "_second_stage"))
    for folder, flag in exported.items():
        if target == folder or target.startswith(folder + os.sep):
            raise SystemExit(
                f"--second-stage-output {target} is {'' if target == folder else 'inside '}{flag} {folder}, "
                "which a later export replaces as a whole; pick a folder outside it"
            )
    first_stage = {os.path.abspath(cfg.OUTPUT_DIR): "the first stage's OUTPUT_DIR (--config-file)"}
    if args.second_stage_config:
        base = get_wss_cfg(args.second_stage_config)
        first_stage.setdefault(os.path.abspath(base.OUTPUT_DIR), "the OUTPUT_DIR of --second-stage-config")
    weights = args.weights or cfg.MODEL.WEIGHTS
    if weights and "://" not in weights:
        first_stage.setdefault(os.path.dirname(os.path.abspath(weights)), "the folder of the first stage's weights")
    if target in first_stage:
        raise SystemExit(
            f"--second-stage-output {target} is {first_stage[target]}: the second stage would overwrite "
            "its model_final.pth and last_checkpoint; pick another folder"
        )
    return target


def root_dataset(name):
    """The dataset that a CAM or pseudo-label registration (metadata source_dataset) derives from."""
    from detectron2.data import MetadataCatalog

    seen = {name}
    while True:
        source = MetadataCatalog.get(name).get("source_dataset", None)
        if not source or source in seen:
            return name
        seen.add(source)
        name = source


def main(argv=None):
    args = parse_args(argv)
    if args.num_gpus < 1:
        raise SystemExit(f"--num-gpus must be >= 1, got {args.num_gpus}")
    if args.num_gpus == 1:
        return export(args)
    from detectron2.engine import launch

    import json

    launch(export, args.num_gpus, dist_url="auto", args=(args,))
    with open(os.path.join(os.path.abspath(os.path.expanduser(args.output)), QUALITY_FILE)) as f:
        return json.load(f)


def export(args):
    """The export in this process (rank r of N writes every N-th image; rank 0 the folders and reports)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.utils import comm
    from detectron2.utils.logger import setup_logger

    from wss_d2 import get_wss_cfg
    from wss_d2.checkpoint import load_weights_strict
    from wss_d2.data.datasets import register_datasets_from_config
    from wss_d2.engine import Trainer
    from wss_d2.inference import maybe_wrap_with_tta, model_sem_seg_kind
    from wss_d2.utils import check_replaceable, move_into_place, staging_folder

    if args.ir_labels and (args.source != "cams" or args.crf):
        raise SystemExit("--ir-labels works on --source cams and runs its own CRF (no --crf)")

    main_process = comm.is_main_process()
    setup_logger(name="wss_d2", distributed_rank=comm.get_rank())
    cfg = get_wss_cfg(args.config_file, args.opts)
    register_datasets_from_config(cfg)
    if args.source in spml_sources() and "SPML" in cfg.TEST and cfg.TEST.SPML.IMAGE_SIZE:
        # the generators run their own scales on the image as it is (docs/spml.md §9.4): no pre-resize
        logger.info(f"--source {args.source}: TEST.SPML.IMAGE_SIZE {cfg.TEST.SPML.IMAGE_SIZE} -> 0 (no pre-resize)")
        frozen = cfg.is_frozen()
        cfg.defrost()
        cfg.TEST.SPML.IMAGE_SIZE = 0
        if frozen:
            cfg.freeze()
    for name in (args.dataset, args.memory_dataset):
        if name and name not in DatasetCatalog.list():
            raise SystemExit(f"Unknown dataset {name!r}")
    meta = MetadataCatalog.get(args.dataset)
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    ignore = meta.get("ignore_label", 255)
    output = os.path.abspath(os.path.expanduser(args.output))
    cams_output = os.path.abspath(os.path.expanduser(args.save_cams)) if args.save_cams else None
    shared = cams_output == output  # labels and CAMs in one folder
    if cams_output and not shared and (cams_output.startswith(output + os.sep) or output.startswith(cams_output + os.sep)):
        raise SystemExit(
            f"--save-cams {cams_output} and --output {output} are nested; each is replaced as a whole when "
            "the export finishes, so give two separate folders (or the same one)"
        )
    if main_process:
        check_replaceable(output, LABEL_FOLDER_FILES + (CAM_FOLDER_FILES if shared else ()), "--output")
        if cams_output and not shared:
            check_replaceable(cams_output, CAM_FOLDER_FILES, "--save-cams")
    exported = {output: "--output"}
    if cams_output and not shared:
        exported[cams_output] = "--save-cams"
    second_stage_dir = second_stage_output_dir(args, cfg, exported)

    model = Trainer.build_model(cfg)
    load_weights_strict(model, args.weights or cfg.MODEL.WEIGHTS)
    model.eval()
    if args.source not in spml_sources():  # SPML's generators run their own scales and flips
        model = maybe_wrap_with_tta(cfg, model)
    # what the model's (or TTA's) sem_seg holds: logits, probabilities or scores
    model_kind = model_sem_seg_kind(model)

    # everything goes to temporary folders, moved into place once complete (see the docstring); the main
    # process makes them and tells the others
    staged = staged_cams = None
    if main_process:
        staged = staging_folder(output)
        staged_cams = staged if shared else (staging_folder(cams_output) if cams_output else None)
    staged, staged_cams = comm.all_gather((staged, staged_cams))[0]
    try:
        report = _export(args, cfg, model, model_kind, meta, num_classes, ignore, staged, staged_cams, output,
                         second_stage_dir)
        comm.synchronize()  # every process's files are written
        if main_process:
            if staged_cams is not None and not shared:
                move_into_place(staged_cams, cams_output)
            move_into_place(staged, output)
    finally:
        if main_process:
            for folder in (staged, staged_cams):
                if folder is not None and os.path.isdir(folder):
                    shutil.rmtree(folder, ignore_errors=True)
    if not main_process:
        return report
    logger.info(
        f"Wrote {report['images']} pseudo labels to {output}"
        + (f" (mIoU against the GT {report['mIoU']:.2f})" if "mIoU" in report else "")
        + (f"; second stage (OUTPUT_DIR {second_stage_dir}): {report['second_stage_command']}"
           if report["second_stage_command"] else f" (the first {args.max_images} images: no second stage)")
    )
    return report


def _export(args, cfg, model, model_kind, meta, num_classes, ignore, folder, cams_folder, output, second_stage_dir):
    """Run the export into `folder` (and CAMs into `cams_folder`); `output` is the final path."""
    import numpy as np
    import torch
    from detectron2.data import DatasetCatalog, build_detection_test_loader
    from detectron2.utils import comm
    from PIL import Image

    from wss_d2.data import WeakLabelDatasetMapper, read_image, read_label_map
    from wss_d2.data.weak_labels.cams import write_irn_cams
    from wss_d2.data.writers import label_palette, write_label_png
    from wss_d2.inference import DenseCRFPool
    from wss_d2.refinement import (
        PseudoLabelQuality, argmax_labels, confident_region_labels, confident_region_pool, crf_pseudo_labels,
        restrict_to_tags, scores_to_probabilities, weak_shot_pseudo_label,
    )

    records = DatasetCatalog.get(args.dataset)
    if args.max_images < 0:
        raise SystemExit(f"--max-images must be >= 0, got {args.max_images}")
    if args.max_images:
        records = records[: args.max_images]
    total = len(records)  # detectron2's test loader gives each process its share (InferenceSampler)
    gt_files = {r.get("image_id"): r["sem_seg_file_name"] for r in records if r.get("sem_seg_file_name")}
    if args.gt_dataset:
        gt_files = {r["image_id"]: r["sem_seg_file_name"] for r in DatasetCatalog.get(args.gt_dataset)}
    mapper = WeakLabelDatasetMapper(cfg, is_train=False, dataset_names=[args.dataset])
    loader = build_detection_test_loader(records, mapper=mapper, num_workers=cfg.DATALOADER.NUM_WORKERS)

    background = meta.get("background_class", 0)

    def predictions():
        """(image id, input, output) per image, produced lazily (bounded memory)."""
        with torch.no_grad():
            for inputs in loader:
                for input, output in zip(inputs, model(inputs)):
                    image_id = input.get("image_id") or os.path.splitext(os.path.basename(input["file_name"]))[0]
                    if cams_folder is not None:
                        if "cams" not in output:
                            raise KeyError("--save-cams: the model's outputs have no 'cams' (and 'cam_labels')")
                        write_irn_cams(os.path.join(cams_folder, f"{image_id}.npy"),
                                       output["cam_labels"].cpu().numpy(), output["cams"].cpu().numpy(), background)
                    yield image_id, input, output

    def probabilities():
        """(image id, RGB image (read for the CRF only), probabilities) per image."""
        for image_id, input, output in predictions():
            probs = scores_to_probabilities(output, args.source, num_classes, cfg.TEST.EXPORT.CAM_BACKGROUND_SCORE,
                                            background, model_kind)
            if args.restrict_to_tags:
                if "image_labels" not in input:
                    raise KeyError(f"--restrict-to-tags: {input['file_name']} has no image tags")
                probs = restrict_to_tags(probs, input["image_labels"].numpy())
            yield image_id, (read_image(input["file_name"], "RGB") if args.crf else None), probs

    def cams():
        """(image id, RGB image, CAMs, their labels) per image, for the confident-region CRFs."""
        for image_id, input, output in predictions():
            labels = output["cam_labels"].cpu().numpy()
            yield image_id, read_image(input["file_name"], "RGB"), output["cams"].float().cpu().numpy(), labels

    def spml_labels():
        """(image id, label map) of an SPML stage-B generator, at the original image size."""
        from detectron2.data.detection_utils import convert_image_to_rgb

        from wss_d2.refinement.spml_generators import SPML_SOURCES, build_knn_memory, spml_crf_pool, spml_probabilities

        memory = None
        grid = (cfg.MODEL.SPML.KMEANS_GRID_TEST,) * 2  # VOC 12, DensePose 24 (docs/spml.md §9.4)
        if args.source == "spml_knn":
            memory_mapper = WeakLabelDatasetMapper(cfg, is_train=False, dataset_names=[args.memory_dataset])
            memory_records = DatasetCatalog.get(args.memory_dataset)
            # every process needs the whole memory: no sharding here
            memory_loader = build_detection_test_loader(memory_records, mapper=memory_mapper,
                                                        sampler=torch.utils.data.SequentialSampler(memory_records),
                                                        num_workers=cfg.DATALOADER.NUM_WORKERS)
            memory = build_knn_memory(model, (d for batch in memory_loader for d in batch), grid=grid)
            logger.info(f"k-NN memory: {memory[0].shape[0]} segments of {len(memory_records)} images "
                        f"of {args.memory_dataset}")
        sizes = {}

        def items():
            with torch.no_grad():
                for inputs in loader:
                    for input in inputs:
                        image_id = input.get("image_id") or os.path.splitext(os.path.basename(input["file_name"]))[0]
                        probs, void = spml_probabilities(args.source, model, input, num_classes, memory=memory,
                                                         background_class=background, grid=grid)
                        rgb = convert_image_to_rgb(input["image"].permute(1, 2, 0).numpy(), cfg.INPUT.FORMAT)
                        sizes[image_id] = (input.get("height", probs.shape[-2]), input.get("width", probs.shape[-1]))
                        yield image_id, np.ascontiguousarray(rgb, dtype=np.uint8), probs, void

        def at_original_size(image_id, label):
            height, width = sizes.pop(image_id)
            if label.shape != (height, width):  # a test-time resize of the mapper: back, nearest
                label = np.asarray(Image.fromarray(label).resize((width, height), Image.NEAREST))
            return image_id, label

        if SPML_SOURCES[args.source][1]:
            with spml_crf_pool(cfg, num_classes) as pool:
                for image_id, label in crf_pseudo_labels(items(), pool, threshold=args.threshold, ignore_label=ignore):
                    yield at_original_size(image_id, label)
        else:
            for image_id, label in crf_pseudo_labels(items(), None, threshold=args.threshold, ignore_label=ignore):
                yield at_original_size(image_id, label)

    def labels():
        """(image id, label map): argmax (after dense CRF with --crf), or confident regions (--ir-labels)."""
        if args.source in spml_sources():
            yield from spml_labels()
        elif args.ir_labels:  # two label CRFs per image on the pool (docs/sipe.md §7.1)
            node = cfg.TEST.IR_LABELS
            with confident_region_pool(cfg) as pool:
                yield from confident_region_labels(
                    cams(), pool, ignore_label=ignore, keep_uncertain=node.KEEP_UNCERTAIN,
                    background_class=background, bg_scale=node.BG_SCALE, gt_prob=node.GT_PROB)
        elif args.crf:
            with DenseCRFPool(cfg) as pool:
                yield from argmax_labels(probabilities(), args.threshold, ignore, pool)
        else:
            yield from argmax_labels(probabilities(), args.threshold, ignore)

    # indexed PNGs in the dataset's colours: the raw indices read back unchanged, and they open as pictures
    palette = label_palette(meta.get("stuff_colors", None), ignore)
    quality = PseudoLabelQuality(num_classes, ignore, background)
    written = 0
    from tqdm import tqdm

    # progress: images done, rate and time left (the labels come out as the CRF pool finishes them)
    from detectron2.data.samplers import InferenceSampler

    share = len(InferenceSampler._get_local_indices(len(records), comm.get_world_size(), comm.get_rank()))
    base_gt = {r.get("image_id"): r.get("sem_seg_file_name") for r in records}
    novel_classes = meta.get("novel_classes", None) if args.weak_shot else None
    if args.weak_shot and (not novel_classes or meta.get("weak_label") != "weak_shot"):
        raise SystemExit(f"--weak-shot: {args.dataset} is not a weak-shot split (metadata weak_label 'weak_shot' "
                         "with novel_classes)")

    def final_labels():
        for image_id, label in labels():
            if args.weak_shot:
                label = weak_shot_pseudo_label(label, read_label_map(base_gt[image_id]), novel_classes, ignore)
            yield image_id, label

    for image_id, label in tqdm(final_labels(), total=share, desc=f"export {comm.get_rank()}" if comm.get_world_size() > 1
                                else "export", unit="image", mininterval=2.0, disable=not comm.is_main_process()):
        write_label_png(label, os.path.join(folder, f"{image_id}.png"), palette=palette)
        written += 1
        if image_id in gt_files:
            quality.update(label, read_label_map(gt_files[image_id]))

    # the other processes' counts (one process: the same numbers)
    shares = comm.all_gather((written, quality))
    written = sum(count for count, _ in shares)
    for _, other in shares[1:] if comm.is_main_process() else ():
        quality.merge(other)
    if not comm.is_main_process():
        return {"images": written}
    if written != total:
        raise RuntimeError(f"{written} pseudo labels were written for {total} images of {args.dataset}")
    report = {"images": written, "output": output, "source": args.source,
              "crf": args.crf or (args.source in spml_sources() and _spml_uses_crf(args.source)),
              "ir_labels": args.ir_labels, "threshold": args.threshold, "weak_shot": args.weak_shot}
    # mIoU / pACC of the labelled pixels, coverage, and ignored as background (docs/sipe.md §7.1)
    report.update(quality.metrics(meta.stuff_classes))
    if args.max_images:
        report["max_images"] = args.max_images
        report["second_stage_command"] = None
        from wss_d2.utils import write_json

        write_json(os.path.join(folder, QUALITY_FILE), report)
        return report
    name = args.name or f"{args.dataset}_pseudo_export"
    # the second stage runs in a fresh process: name the built-in split, not a CAM or
    # pseudo-label registration of this run's command line (it would not exist there)
    source = root_dataset(args.dataset)
    base = os.path.abspath(args.second_stage_config or args.config_file)
    with open(os.path.join(folder, SECOND_STAGE_FILE), "w") as f:
        f.write(
            f'_BASE_: "{base}"\n'
            "DATASETS:\n"
            f'  PSEUDO_LABELS: [["{name}", "{source}", "{output}"]]\n'
            f'  TRAIN: ("{name}",)\n'
            "# its own folder: the first stage's OUTPUT_DIR (inherited from _BASE_) keeps its checkpoints\n"
            f'OUTPUT_DIR: "{second_stage_dir}"\n'
        )
    second_stage = os.path.join(args.output, SECOND_STAGE_FILE)
    report.update(
        second_stage_config=os.path.join(output, SECOND_STAGE_FILE),
        second_stage_output=second_stage_dir,
        second_stage_command=f"python train_net.py --config-file {shlex.quote(second_stage)}",
    )
    from wss_d2.utils import write_json

    write_json(os.path.join(folder, QUALITY_FILE), report)
    return report


def _spml_uses_crf(source):
    from wss_d2.refinement.spml_generators import SPML_SOURCES

    return SPML_SOURCES[source][1]


if __name__ == "__main__":
    main()
