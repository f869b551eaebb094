#!/usr/bin/env python
"""
Write the partner table of a config's training sets (SimFormer's image pairs, docs/simformer.md §5):
for every image, the images sharing exactly one novel class with it (per class), sharing 0 or >= 2
novel classes, and sharing a base class, from the whole-image label sets (base classes and novel
tags). Training reads it with INPUT.PAIRS.TABLE; without a file the table is built in memory at the
start of training (fine for small sets, minutes for COCO-Stuff-10K and ADE20K in every process).

    python tools/build_partner_table.py --config-file configs/coco/simformer_R50_split1_crosim.yaml
    python tools/build_partner_table.py --config-file ... --output datasets/partners/my_split.pth

The default --output is the config's INPUT.PAIRS.TABLE. The table names its datasets, novel classes
and images; training on another split refuses it.
"""
import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="config whose DATASETS.TRAIN to pair")
    parser.add_argument("--output", default="", help="table file (default: the config's INPUT.PAIRS.TABLE)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random subsets of long lists")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from detectron2.data import get_detection_dataset_dicts
    from detectron2.utils.logger import setup_logger

    from wss_d2 import get_wss_cfg
    from wss_d2.data.dataset_mapper import resolve_weak_label_metadata
    from wss_d2.data.pairs import build_partner_table, save_partner_table

    setup_logger(name="wss_d2")
    cfg = get_wss_cfg(args.config_file, args.opts)
    output = args.output or cfg.INPUT.PAIRS.TABLE
    if not output:
        raise SystemExit("No --output and the config's INPUT.PAIRS.TABLE is empty: say where to write the table")
    names = list(cfg.DATASETS.TRAIN)
    meta = resolve_weak_label_metadata(names)
    novel = meta.get("novel_classes") or ()
    if not novel:
        raise SystemExit(f"{names} have no novel classes: partner tables pair weak-shot training sets")
    dicts = get_detection_dataset_dicts(names, filter_empty=False)
    start = time.perf_counter()
    table = build_partner_table(names, dicts, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, novel,
                                tuple(cfg.INPUT.PAIRS.MAX_CANDIDATES), seed=args.seed,
                                ignore_value=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE)
    save_partner_table(table, output)
    logging.getLogger("wss_d2").info(f"Partner table of {names} ({len(dicts)} images) written to {output} "
                                     f"in {time.perf_counter() - start:.1f} s")
    return output


if __name__ == "__main__":
    main()
