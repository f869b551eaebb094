"""End-to-end runs of train_net.py on the synthetic dataset (CPU, a few minutes in all)."""
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog
from detectron2.engine.hooks import HookBase

from wss_d2 import get_wss_cfg
from wss_d2.engine import Trainer
from wss_d2.engine.trainer import BestValCheckpointer

from .conftest import MAIN_CONFIG, REPO, load_script

pytestmark = pytest.mark.slow

TRAIN_ITERS = 300
RESUME_FROM = 200  # a periodic checkpoint is saved after iteration RESUME_FROM - 1
FAST = ["DATALOADER.NUM_WORKERS", "1", "SOLVER.CHECKPOINT_PERIOD", str(RESUME_FROM), "TEST.EVAL_PERIOD", "0"]


def run_train_net(*args, num_gpus=1, check=True, config_file=MAIN_CONFIG):
    command = [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", config_file]
    command += ["--num-gpus", str(num_gpus), *args]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1200)
    if check and proc.returncode != 0:
        pytest.fail(f"train_net.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def read_results(output_dir):
    with open(os.path.join(output_dir, "results.json")) as f:
        return json.load(f)["sem_seg"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("baseline"))
    run_train_net(*FAST, "SOLVER.MAX_ITER", str(TRAIN_ITERS), "OUTPUT_DIR", output_dir)
    return output_dir


def trivial_miou(dataset_name, num_classes=6):
    """mIoU of predicting the most frequent class (background) everywhere."""
    counts = np.zeros(256, np.int64)
    for record in DatasetCatalog.get(dataset_name):
        counts += np.bincount(np.asarray(Image.open(record["sem_seg_file_name"])).ravel(), minlength=256)
    labelled = counts[:num_classes]
    return 100.0 * labelled.max() / labelled.sum() / num_classes


def test_training_beats_trivial_predictor(trained):
    miou = read_results(trained)["mIoU"]
    trivial = trivial_miou("wss_synthetic_val")
    assert miou > 2 * trivial, f"mIoU {miou:.2f} vs trivial {trivial:.2f}"


def test_training_writes_logs_and_checkpoints(trained):
    with open(os.path.join(trained, "metrics.json")) as f:
        metrics = [json.loads(line) for line in f if line.strip()]
    losses = [m["total_loss"] for m in metrics if "total_loss" in m]
    assert len(losses) >= 5 and np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    assert any("sem_seg/mIoU" in m for m in metrics)  # the EvalHook's result
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(trained))
    with open(os.path.join(trained, "last_checkpoint")) as f:
        assert f.read().strip() == "model_final.pth"


def test_eval_only_refuses_a_checkpoint_that_does_not_fit(trained, tmp_path):
    weights = os.path.join(trained, "model_final.pth")
    proc = run_train_net(
        "--eval-only", "MODEL.WEIGHTS", weights, "MODEL.RESNETS.DEPTH", "34", "MODEL.RESNETS.RES5_MULTI_GRID", "[1, 1, 1]",
        "OUTPUT_DIR", str(tmp_path), check=False,
    )
    assert proc.returncode != 0
    assert "does not fit the model" in proc.stderr and "missing from the checkpoint: backbone.res2.2." in proc.stderr

    # a 21-class .pkl (detectron2 format, matching heuristics): detectron2 alone skips the head and
    # evaluates a random one with exit 0
    state = torch.load(weights, weights_only=False)["model"]
    state = {k: v.numpy() for k, v in state.items()}
    state["sem_seg_head.predictor.weight"] = np.zeros((21,) + state["sem_seg_head.predictor.weight"].shape[1:], np.float32)
    state["sem_seg_head.predictor.bias"] = np.zeros(21, np.float32)
    pkl = tmp_path / "voc_head.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"model": state, "__author__": "test", "matching_heuristics": True}, f)
    proc = run_train_net("--eval-only", "MODEL.WEIGHTS", str(pkl), "OUTPUT_DIR", str(tmp_path / "pkl"), check=False)
    assert proc.returncode != 0
    assert "does not fit the model" in proc.stderr and "sem_seg_head.predictor.bias" in proc.stderr
    assert not (tmp_path / "pkl" / "results.json").exists()


def test_eval_only_reproduces_mIoU(trained, tmp_path):
    weights = os.path.join(trained, "model_final.pth")
    run_train_net("--eval-only", "MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(tmp_path))
    assert read_results(str(tmp_path))["mIoU"] == pytest.approx(read_results(trained)["mIoU"], abs=1e-9)


def test_two_process_gloo_eval_matches_one_process(trained, tmp_path):
    weights = os.path.join(trained, "model_final.pth")
    run_train_net(
        "--eval-only", "--dist-url", "auto", "MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(tmp_path), num_gpus=2
    )
    two = read_results(str(tmp_path))
    one = read_results(trained)
    for key in ("mIoU", "fwIoU", "pACC", "mACC"):
        assert two[key] == pytest.approx(one[key], abs=1e-9), key


def _interrupted_copy(trained, output_dir):
    """The trained run's folder as if it had stopped right after the periodic checkpoint."""
    shutil.copytree(trained, output_dir)
    os.remove(os.path.join(output_dir, "model_final.pth"))
    with open(os.path.join(output_dir, "last_checkpoint"), "w") as f:
        f.write(f"model_{RESUME_FROM - 1:07d}.pth")
    return output_dir


def test_two_process_gloo_training(tmp_path):
    """--num-gpus 2 without a GPU: two CPU processes, DistributedDataParallel over GLOO."""
    proc = run_train_net(
        "--dist-url", "auto", "SOLVER.MAX_ITER", "10", "SOLVER.IMS_PER_BATCH", "4",
        "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", str(tmp_path),
        num_gpus=2,
    )
    assert "World size: 2" in proc.stdout + proc.stderr
    with open(os.path.join(tmp_path, "log.txt.rank1")) as f:
        assert "Rank of current process: 1. World size: 2" in f.read()
    checkpoint = torch.load(os.path.join(tmp_path, "model_final.pth"), weights_only=False)
    assert checkpoint["trainer"]["iteration"] == 9
    assert os.path.exists(os.path.join(tmp_path, "results.json"))


def test_resume_continues_from_last_checkpoint(trained, tmp_path):
    output_dir = _interrupted_copy(trained, str(tmp_path / "resumed"))
    proc = run_train_net("--resume", *FAST, "SOLVER.MAX_ITER", str(TRAIN_ITERS), "OUTPUT_DIR", output_dir)
    assert f"Starting training from iteration {RESUME_FROM}" in proc.stdout + proc.stderr
    with open(os.path.join(output_dir, "metrics.json")) as f:
        entries = [json.loads(line) for line in f if line.strip()]
    iterations = [e["iteration"] for e in entries if "total_loss" in e]  # training steps only
    # the first run's entries from RESUME_FROM on were dropped; the resumed run logged them again
    assert iterations == sorted(set(iterations)) and iterations[-1] == TRAIN_ITERS - 1
    assert any(i < RESUME_FROM for i in iterations) and any(i >= RESUME_FROM for i in iterations)
    checkpoint = torch.load(os.path.join(output_dir, "model_final.pth"), weights_only=False)
    assert checkpoint["trainer"]["iteration"] == TRAIN_ITERS - 1
    assert os.path.exists(os.path.join(output_dir, "results.json"))


def _trainer(output_dir, *opts):
    cfg = get_wss_cfg(MAIN_CONFIG, [*FAST, "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", output_dir, *opts])
    return Trainer(cfg)


def test_resume_restores_optimizer_state(trained, tmp_path):
    output_dir = _interrupted_copy(trained, str(tmp_path / "resumed"))
    saved = torch.load(os.path.join(output_dir, f"model_{RESUME_FROM - 1:07d}.pth"), weights_only=False)
    saved_state = saved["trainer"]["_trainer"]["optimizer"]["state"]
    assert saved_state, "the checkpoint holds no optimizer state"
    trainer = _trainer(output_dir, "SOLVER.MAX_ITER", str(TRAIN_ITERS))
    fresh = trainer.optimizer.state_dict()["state"]
    assert not fresh  # nothing before loading
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == RESUME_FROM
    loaded = trainer.optimizer.state_dict()["state"]
    assert loaded.keys() == saved_state.keys()
    for key, value in saved_state.items():
        assert torch.equal(loaded[key]["momentum_buffer"], value["momentum_buffer"])


class _FailAt(HookBase):
    def __init__(self, iteration):
        self.iteration = iteration

    def before_step(self):
        if self.trainer.iter == self.iteration:
            raise RuntimeError("simulated failure")


def test_interrupted_training_saves_checkpoint_and_resumes(tmp_path):
    output_dir = str(tmp_path)
    trainer = _trainer(output_dir, "SOLVER.MAX_ITER", "10")
    trainer.register_hooks([_FailAt(4)])
    trainer.resume_or_load(resume=False)
    with pytest.raises(RuntimeError, match="simulated failure"):
        trainer.train()
    with open(os.path.join(output_dir, "last_checkpoint")) as f:
        assert f.read().strip() == "model_interrupted.pth"
    saved = torch.load(os.path.join(output_dir, "model_interrupted.pth"), weights_only=False)
    assert saved["iteration"] == 3 and saved["trainer"]["iteration"] == 3
    resumed = _trainer(output_dir, "SOLVER.MAX_ITER", "10")
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4


def test_best_checkpointer_keeps_the_best_evaluation(tmp_path, caplog):
    trainer = _trainer(str(tmp_path / "best"), "SOLVER.MAX_ITER", "4", "TEST.EVAL_PERIOD", "2",
                       "SOLVER.BEST_CHECKPOINTER.METRIC", "sem_seg/mIoU")
    trainer.resume_or_load(resume=False)
    trainer.train()
    evaluations = trainer.storage.history("sem_seg/mIoU").values()  # [(mIoU, iteration)]
    assert len(evaluations) == 2  # after iteration 2 and at the end
    best_miou, best_iter = max(evaluations, key=lambda e: (e[0], -e[1]))  # the first of equals
    saved = torch.load(str(tmp_path / "best" / "model_best.pth"), weights_only=False)
    assert saved["iteration"] == best_iter

    # a metric the evaluation does not log: no model_best.pth, and a warning naming the real ones
    trainer = _trainer(str(tmp_path / "typo"), "SOLVER.MAX_ITER", "1", "SOLVER.BEST_CHECKPOINTER.METRIC", "sem_seg/miou")
    trainer.resume_or_load(resume=False)
    with caplog.at_level(logging.WARNING, logger="wss_d2.engine.trainer"):
        logging.getLogger("wss_d2.engine.trainer").propagate = True
        trainer.train()
    assert not os.path.exists(tmp_path / "typo" / "model_best.pth")
    assert "'sem_seg/miou' was not logged" in caplog.text and "sem_seg/mIoU" in caplog.text
    with pytest.raises(ValueError, match="BEST_CHECKPOINTER.MODE"):
        BestValCheckpointer(2, trainer.checkpointer, "sem_seg/mIoU", "best")


def test_results_json_is_strict_json(trained, tmp_path):
    def no_constants(name):
        raise AssertionError(f"results.json holds {name}, which is not JSON")

    with open(os.path.join(trained, "results.json")) as f:
        json.loads(f.read(), parse_constant=no_constants)
    train_net = load_script("train_net.py")
    cfg = get_wss_cfg(MAIN_CONFIG, ["OUTPUT_DIR", str(tmp_path)])
    train_net.report(cfg, {"sem_seg": {"mIoU": 50.0, "IoU-disc": float("nan"), "IoU-cross": np.float64("inf")}})
    written = json.loads((tmp_path / "results.json").read_text(), parse_constant=no_constants)
    assert written == {"sem_seg": {"mIoU": 50.0, "IoU-disc": None, "IoU-cross": None}}


def test_eval_only_without_weights_names_the_key(tmp_path):
    proc = run_train_net("--eval-only", "OUTPUT_DIR", str(tmp_path), check=False)
    assert proc.returncode != 0
    assert "--eval-only needs the weights" in proc.stderr and "MODEL.WEIGHTS" in proc.stderr


def test_install_help_installs_nothing():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "install.py"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "usage: install.py" in proc.stdout
    assert "[install]" not in proc.stdout + proc.stderr


def test_unknown_key_on_command_line_fails_clearly():
    proc = run_train_net("SOLVER.NOT_A_KEY", "1", check=False)
    assert proc.returncode != 0
    assert "SOLVER.NOT_A_KEY" in proc.stderr and "command line" in proc.stderr


def test_num_classes_must_match_dataset(tmp_path):
    proc = run_train_net("--eval-only", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "5", "OUTPUT_DIR", str(tmp_path), check=False)
    assert proc.returncode != 0
    assert "NUM_CLASSES=5" in proc.stderr and "wss_synthetic_train" in proc.stderr


def test_export_pseudo_labels_then_second_stage_training(trained, tmp_path):
    """Pseudo labels from the trained model (CRF over a worker pool, confidence threshold), in
    the dataset's format, then a second-stage training on them with the written config."""
    pseudo = tmp_path / "pseudo"
    export = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "export_pseudo_labels.py"), "--config-file", MAIN_CONFIG,
         "--dataset", "wss_synthetic_train", "--weights", os.path.join(trained, "model_final.pth"),
         "--output", str(pseudo), "--crf", "--threshold", "0.5", "--name", "wss_synthetic_train_pseudo_test",
         "TEST.CRF.NUM_WORKERS", "2", "DATALOADER.NUM_WORKERS", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert export.returncode == 0, export.stderr[-4000:]
    records = DatasetCatalog.get("wss_synthetic_train")
    files = sorted(p.name for p in pseudo.glob("*.png"))
    assert files == sorted(r["image_id"] + ".png" for r in records)
    # the real format: single-channel PNGs of raw class ids, 255 where not confident
    from wss_d2.data.readers import read_label_map

    label = read_label_map(str(pseudo / files[0]))
    gt = read_label_map(records[0]["sem_seg_file_name"])
    assert label.shape == gt.shape and set(np.unique(label).tolist()) <= set(range(6)) | {255}
    quality = json.loads((pseudo / "pseudo_label_quality.json").read_text())
    assert quality["images"] == len(records) and quality["mIoU"] > 2 * trivial_miou("wss_synthetic_val")
    assert 0 < quality["coverage"] <= 100

    second = tmp_path / "second"
    run_train_net(
        "SOLVER.MAX_ITER", "20", "TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "1", "OUTPUT_DIR", str(second),
        config_file=str(pseudo / "second_stage.yaml"),
    )
    log = (second / "log.txt").read_text()
    assert "wss_synthetic_train_pseudo_test" in log and "wss_synthetic_val: mIoU = " in log
    assert (second / "model_final.pth").exists()
