"""
SIPE's pipeline end to end on a few synthetic images (docs/sipe.md §0): train on tags and evaluate
the localisation maps with the CAM evaluator; export IS-CAMs and confident-region labels
(dense CRF); train IRN on them and export random-walk labels; train the second stage.
Short budgets: this checks that the stages fit together, tools/run_sipe_pipeline.py measures.
"""
import json
import os

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser

from wss_d2.data.weak_labels.cams import read_irn_cams

from .conftest import CONFIGS, MAIN_CONFIG, load_script

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("restore_loggers")]

TAGS, GT = "wss_synthetic_train_tags_tiny", "wss_synthetic_train_tiny"
FAST = ["DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "4", "TEST.CRF.NUM_WORKERS", "1"]


def _register_subsets(synthetic_dir):
    for name, source in ((TAGS, "wss_synthetic_train_tags"), (GT, "wss_synthetic_train")):
        if name not in DatasetCatalog.list():
            DatasetCatalog.register(name, lambda source=source: DatasetCatalog.get(source)[:10])
            meta = MetadataCatalog.get(source).as_dict()
            meta.pop("name")
            MetadataCatalog.get(name).set(**meta)


def _train(config, output, *opts):
    train_net = load_script("train_net.py")
    args = default_argument_parser().parse_args(["--config-file", config, *FAST, "OUTPUT_DIR", output, *opts])
    return train_net.main(args)


def test_sipe_pipeline_end_to_end(synthetic_dir, tmp_path):
    _register_subsets(synthetic_dir)
    export = load_script("tools/export_pseudo_labels.py")
    out = str(tmp_path)

    # stage 0: the synthetic stand-in for ImageNet weights, a tag classifier; its CAMs: the sweep
    results = _train(os.path.join(CONFIGS, "synthetic", "tag_classifier_R18.yaml"), f"{out}/pretrain",
                     "SOLVER.MAX_ITER", "6", "DATASETS.TEST", f"('{GT}',)", "TEST.SIPE.SCALES", "[1.0]")
    assert "mIoU" not in results["cam"] and 0 <= results["cam"]["mIoU@best"] <= 100  # no background channel
    pretrained = ["MODEL.WEIGHTS", f"{out}/pretrain/model_final.pth"]

    # stage A: SIPE on tags from those weights, localisation maps through the CAM evaluator
    results = _train(os.path.join(CONFIGS, "synthetic", "sipe_R18.yaml"), f"{out}/sipe", "SOLVER.MAX_ITER", "8",
                     "DATASETS.TEST", f"('{GT}',)", "TEST.SIPE.SCALES", "[1.0, 0.5]", *pretrained)
    cam = results["cam"]
    assert 0 <= cam["mIoU"] <= 100 and 0 <= cam["best_threshold"] <= 0.95
    assert os.path.exists(f"{out}/sipe/model_final.pth")

    # stage B: IS-CAMs (SIPE format) and CRF confident-region labels {0, class, 255}
    report = export.main([
        "--config-file", os.path.join(CONFIGS, "synthetic", "sipe_R18.yaml"), "--weights", f"{out}/sipe/model_final.pth",
        "--dataset", TAGS, "--source", "cams", "--ir-labels", "--save-cams", f"{out}/cams",
        "--output", f"{out}/ir_labels", "--gt-dataset", GT, "TEST.SIPE.SCALES", "[1.0]", *FAST,
    ])
    assert report["images"] == 10 and "mIoU_ignore_as_background" in report
    records = DatasetCatalog.get(TAGS)
    for record in records:
        labels, maps = read_irn_cams(f"{out}/cams/{record['image_id']}.npy")
        assert labels[0] == 0 and sorted(labels[1:].tolist()) == sorted(int(t) for t in record["image_labels"])
        ir = np.asarray(Image.open(f"{out}/ir_labels/{record['image_id']}.png"))
        assert ir.shape == maps.shape[1:] and set(np.unique(ir)) <= {0, 255, *labels.tolist()}

    # stage C: IRN on the confident regions, random walk of the IS-CAMs
    registrations = ["DATASETS.PSEUDO_LABELS", json.dumps([[f"{TAGS}_ir", TAGS, f"{out}/ir_labels"]]),
                     "DATASETS.CAMS", json.dumps([[f"{TAGS}_cams", TAGS, f"{out}/cams"]])]
    irn_config = os.path.join(CONFIGS, "synthetic", "irn_R18_sipe.yaml")
    _train(irn_config, f"{out}/irn", *registrations, "DATASETS.TRAIN", f"('{TAGS}_ir',)", *pretrained,
           "SOLVER.MAX_ITER", "4")
    report = export.main([
        "--config-file", irn_config, "--weights", f"{out}/irn/model_final.pth", "--dataset", f"{TAGS}_cams",
        "--output", f"{out}/rw_labels", "--gt-dataset", GT, "--second-stage-config", MAIN_CONFIG,
        "--name", f"{TAGS}_rw", *registrations, *FAST,
    ])
    assert report["images"] == 10 and 0 <= report["mIoU"] <= 100 and report["coverage"] == pytest.approx(100)

    # stage D: the second stage trains on the random-walk labels with one config file
    results = _train(f"{out}/rw_labels/second_stage.yaml", f"{out}/second", "SOLVER.MAX_ITER", "4",
                     "DATASETS.TEST", f"('{GT}',)")
    assert 0 <= results["sem_seg"]["mIoU"] <= 100
