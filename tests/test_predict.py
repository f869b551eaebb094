"""demo/predict.py and the sem_seg evaluator's saved predictions (TEST.SAVE_PREDICTIONS)."""
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.modeling import build_model

from wss_d2 import get_wss_cfg
from wss_d2.engine import Trainer

from .conftest import CONFIGS, MAIN_CONFIG, load_script

SIPE_CONFIG = os.path.join(CONFIGS, "synthetic", "sipe_R18.yaml")


def _checkpoint(config, path, *opts):
    """A randomly initialised model of `config` saved as a checkpoint (the prediction path, not its quality)."""
    torch.manual_seed(0)
    model = build_model(get_wss_cfg(config, ["MODEL.WEIGHTS", "", *opts]))
    torch.save({"model": model.state_dict()}, path)
    return str(path)


def _val_images(synthetic_dir, n):
    from detectron2.data import DatasetCatalog

    return DatasetCatalog.get("wss_synthetic_val")[:n]


def _freshly_trained(tmp_path, iterations=5):
    """train_net.py on the synthetic data for a few iterations (no evaluation); its model_final.pth."""
    import subprocess
    import sys

    from .conftest import REPO

    out = str(tmp_path / "trained")
    command = [sys.executable, "train_net.py", "--config-file", MAIN_CONFIG, "SOLVER.MAX_ITER", str(iterations),
               "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()", "OUTPUT_DIR", out]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return os.path.join(out, "model_final.pth")


def test_predictions_equal_the_evaluation_and_come_with_an_overlay(synthetic_dir, tmp_path, restore_loggers):
    weights = _freshly_trained(tmp_path)
    # --eval-only's predictions of the val set (the evaluator writes them with TEST.SAVE_PREDICTIONS)
    cfg = get_wss_cfg(MAIN_CONFIG, ["MODEL.WEIGHTS", weights, "TEST.SAVE_PREDICTIONS", "True",
                                    "OUTPUT_DIR", str(tmp_path / "eval")])
    model = build_model(cfg)
    from wss_d2.checkpoint import load_weights_strict

    load_weights_strict(model, weights)
    Trainer.test(cfg, model)
    saved = tmp_path / "eval" / "inference" / "wss_synthetic_val" / "predictions"
    assert len(os.listdir(saved)) == 100

    # the same JPEGs, plus one made here, predicted by the demo from a folder and a glob
    folder = tmp_path / "mine"
    folder.mkdir()
    records = _val_images(synthetic_dir, 3)
    for record in records[:2]:
        shutil.copy(record["file_name"], folder)
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (70, 90, 3), dtype=np.uint8)).save(folder / "new.jpg")
    out = tmp_path / "pred"
    load_script("demo/predict.py").main(["--config-file", MAIN_CONFIG, "--input", str(folder),
                                         records[2]["file_name"][:-4] + "*", "--output", str(out),
                                         "MODEL.WEIGHTS", weights])
    for record in records:
        stem = record["image_id"]
        label = Image.open(out / f"{stem}.png")
        assert label.mode == "P"  # raw indices, shown in the dataset's colours
        expected = np.asarray(Image.open(saved / f"{stem}.png"))
        np.testing.assert_array_equal(np.asarray(label), expected)
        overlay = np.asarray(Image.open(out / f"{stem}_overlay.png"))
        h, w = expected.shape
        scale = max(1.0, 320 / min(h, w))  # small images are drawn enlarged, so that the names fit
        assert abs(overlay.shape[1] - w * scale) <= 1 and overlay.shape[0] > h * scale and overlay.shape[2] == 3
    assert np.asarray(Image.open(out / "new.png")).shape == (70, 90)
    assert os.path.exists(out / "new_overlay.png")


def test_cam_heat_maps_of_sipe_and_clear_errors(synthetic_dir, tmp_path, restore_loggers):
    weights = _checkpoint(SIPE_CONFIG, tmp_path / "sipe.pth")
    record = _val_images(synthetic_dir, 1)[0]
    out = tmp_path / "cams"
    predict = load_script("demo/predict.py")
    predict.main(["--config-file", SIPE_CONFIG, "--input", record["file_name"], "--output", str(out), "--cams",
                  "--tags", "background,1,3", "MODEL.WEIGHTS", weights])
    from detectron2.data import MetadataCatalog

    classes = MetadataCatalog.get("wss_synthetic_train").stuff_classes
    stem = record["image_id"]
    # SIPE's IS-CAM: the background map and one per tagged class
    for class_id in (0, 1, 3):
        heat = np.asarray(Image.open(out / f"{stem}_cam_{classes[class_id]}.png"))
        assert heat.shape[:2] == np.asarray(Image.open(record["file_name"])).shape[:2]
    assert not (out / f"{stem}_cam_{classes[2]}.png").exists()

    with pytest.raises(SystemExit, match="--tags: 'zebra'"):
        predict.main(["--config-file", SIPE_CONFIG, "--input", record["file_name"], "--output", str(out),
                      "--tags", "zebra", "MODEL.WEIGHTS", weights])
    with pytest.raises(SystemExit, match="no such file or folder"):
        predict.main(["--config-file", MAIN_CONFIG, "--input", str(tmp_path / "nothing*.jpg"), "--output", str(out),
                      "MODEL.WEIGHTS", weights])
    with pytest.raises(SystemExit, match="returns no CAMs"):
        predict.main(["--config-file", MAIN_CONFIG, "--input", record["file_name"], "--output", str(out), "--cams",
                      "MODEL.WEIGHTS", _checkpoint(MAIN_CONFIG, tmp_path / "dl.pth")])
    with pytest.raises(Exception, match="does not fit"):  # the strict check names the mismatch
        predict.main(["--config-file", MAIN_CONFIG, "--input", record["file_name"], "--output", str(out),
                      "MODEL.WEIGHTS", weights])


def test_validation_predictions_reach_tensorboard(synthetic_dir, tmp_path):
    """TEST.VIS_PREDICTIONS 2: at the evaluation two overlays of val images go to TensorBoard."""
    import subprocess
    import sys

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from .conftest import REPO

    out = str(tmp_path / "vis")
    command = [sys.executable, "train_net.py", "--config-file", MAIN_CONFIG, "SOLVER.MAX_ITER", "2", "TEST.EVAL_PERIOD",
               "2", "TEST.VIS_PREDICTIONS", "2", "DATALOADER.NUM_WORKERS", "0", "DATASETS.TEST", "('wss_synthetic_val',)",
               "OUTPUT_DIR", out]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = EventAccumulator(out, size_guidance={"images": 0})
    events.Reload()
    tags = sorted(events.Tags()["images"])
    assert tags == ["predictions/syn_001000", "predictions/syn_001001"]
    image = events.Images("predictions/syn_001000")
    assert len(image) == 1 and image[0].width > 100  # the one evaluation, an overlay with its legend
