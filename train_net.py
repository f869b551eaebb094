#!/usr/bin/env python
"""
Train and evaluate wss_d2 models.

    python train_net.py --config-file configs/synthetic/deeplabv3plus_R18.yaml
    python train_net.py --config-file CONFIG --num-gpus 8
    python train_net.py --config-file CONFIG --eval-only MODEL.WEIGHTS path/to/model_final.pth
    python train_net.py --config-file CONFIG --resume      # continue from OUTPUT_DIR/last_checkpoint

With no GPU, --num-gpus N starts N CPU processes that communicate through GLOO.
"""
import logging
import os

from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from wss_d2 import get_wss_cfg
from wss_d2.checkpoint import WSSCheckpointer, load_weights_strict
from wss_d2.data.datasets import register_datasets_from_config
from wss_d2.engine import Trainer
from wss_d2.utils import write_json

RESULTS_FILE = "results.json"


def setup(args):
    cfg = get_wss_cfg(args.config_file, args.opts)
    register_datasets_from_config(cfg)  # DATASETS.FOLDER, PSEUDO_LABELS, CAMS: in every process
    cfg.freeze()
    default_setup(cfg, args)
    setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="wss_d2")
    return cfg


def report(cfg, results):
    """Log each test set's mIoU and write all results to OUTPUT_DIR/results.json."""
    if not comm.is_main_process() or not results:
        return
    logger = logging.getLogger("wss_d2")
    # one test set gives {task: metrics}; several give {dataset: {task: metrics}}
    per_dataset = results if len(cfg.DATASETS.TEST) > 1 else {cfg.DATASETS.TEST[0]: results}
    for dataset, tasks in per_dataset.items():
        if "mIoU" in tasks.get("sem_seg", {}):
            logger.info(f"{dataset}: mIoU = {tasks['sem_seg']['mIoU']:.2f}")
    write_json(os.path.join(cfg.OUTPUT_DIR, RESULTS_FILE), results)  # strict JSON: NaN as null


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        named = WSSCheckpointer(model, save_dir=cfg.OUTPUT_DIR).named_checkpoint() if args.resume else ""
        weights, source = (named, f"{cfg.OUTPUT_DIR}/last_checkpoint") if named else (cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS")
        if not weights:
            raise SystemExit(
                "--eval-only needs the weights to evaluate: add MODEL.WEIGHTS path/to/model_final.pth to the "
                f"command line (or --resume, to use {cfg.OUTPUT_DIR}/last_checkpoint)"
            )
        load_weights_strict(model, weights, source)  # a checkpoint that does not fit fails, naming the keys
        results = Trainer.test(cfg, model)
        if comm.is_main_process() and cfg.TEST.EXPECTED_RESULTS:
            verify_results(cfg, results)
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        results = trainer.train()  # verifies TEST.EXPECTED_RESULTS itself
    report(cfg, results)
    return results


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
