"""CAMEvaluator: argmax, threshold sweep and background multiplier on hand-made cases, the
one-pass sweep against a per-threshold recomputation, errors, and 2-process GLOO gathering."""
import json
import math
import os
import pickle
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import inference_on_dataset

from wss_d2 import get_wss_cfg
from wss_d2.evaluation.cam_evaluation import CAMEvaluator, threshold_grid

CLASSES = ["background", "a", "b", "c", "d"]


def _register(name, records, classes, background_class=0):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(
        stuff_classes=list(classes), ignore_label=255, evaluator_type="cam", background_class=background_class
    )


def _records(folder, name, labels):
    records = []
    for i, label in enumerate(labels):
        path = os.path.join(folder, f"{name}_{i}.png")
        Image.fromarray(np.asarray(label, dtype=np.uint8), mode="L").save(path)
        records.append({"file_name": f"{name}_{i}.jpg", "sem_seg_file_name": path})
    return records


def _evaluator(tmp_path, name, labels, classes, **kwargs):
    records = _records(str(tmp_path), name, labels)
    _register(name, records, classes)
    return CAMEvaluator(name, distributed=False, **kwargs), records


def _output(maps, cam_labels):
    return {"cams": torch.tensor(np.asarray(maps), dtype=torch.float32), "cam_labels": torch.tensor(cam_labels)}


def _sweep_miou(evaluator, threshold):
    """mIoU (%) of one threshold of the sweep, from the evaluator's confusion matrices."""
    t = int(np.argmin(np.abs(evaluator.thresholds - threshold)))
    confusion = evaluator.confusion_matrices()["sweep"][t].astype(float)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    return 100 * np.mean(tp[union > 0] / union[union > 0])


def test_threshold_grid_default_and_rounding():
    grid = threshold_grid(0.0, 0.95, 0.01)
    assert len(grid) == 96 and grid[0] == 0.0 and grid[-1] == 0.95
    assert grid[30] == 0.3 and grid[15] == 0.15  # exact floats, not 0.30000000000000004
    assert threshold_grid(0.1, 0.3, 0.1).tolist() == [0.1, 0.2, 0.3]


def test_argmax_mode_on_a_toy_with_known_confusion(tmp_path):
    gt = np.array([[0, 1, 1], [0, 2, 255]])
    maps = np.array(
        [
            [[0.9, 0.2, 0.5], [0.1, 0.1, 0.9]],  # background
            [[0.1, 0.8, 0.5], [0.7, 0.3, 0.0]],  # a; (0, 2) ties with the background: background wins
            [[0.0, 0.1, 0.2], [0.2, 0.6, 0.0]],  # b
        ]
    )
    evaluator, records = _evaluator(tmp_path, "_cam_toy", [gt], CLASSES[:3])
    evaluator.process(records, [_output(maps, [0, 1, 2])])
    # prediction [[0, 1, 0], [1, 2, -]]
    expected = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    assert (evaluator.confusion_matrices()["argmax"] == expected).all()
    results = evaluator.evaluate()["cam"]
    assert results["mIoU"] == pytest.approx(100 * (1 / 3 + 1 / 3 + 1) / 3)
    assert results["IoU-background"] == pytest.approx(100 / 3) and results["IoU-b"] == pytest.approx(100)
    assert results["Precision-a"] == pytest.approx(50) and results["Recall-a"] == pytest.approx(50)


def test_sweep_finds_the_threshold_the_case_is_built_for(tmp_path):
    # 16 labelled pixels: 6 foreground (score 0.6) and 10 background (score 0.3)
    gt = np.zeros((4, 4), np.int64)
    gt[1:3, 1:4] = 1
    scores = np.where(gt == 1, 0.6, 0.3)[None]
    evaluator, records = _evaluator(tmp_path, "_cam_sweep", [gt], CLASSES[:2], output_dir=str(tmp_path / "out"))
    evaluator.process(records, [_output(scores, [1])])  # foreground CAM only: no argmax mode
    results = evaluator.evaluate()["cam"]
    # a pixel is background when its score <= τ (τ in front wins the argmax tie):
    # every τ in [0.30, 0.60) is perfect, the first one in the grid is reported
    assert results["best_threshold"] == pytest.approx(0.30) and results["mIoU@best"] == pytest.approx(100)
    # τ = 0.15: everything foreground, IoU_bg = 0, IoU_fg = 6 / 16
    assert results["mIoU@0.15"] == pytest.approx(100 * (0 + 6 / 16) / 2)
    assert _sweep_miou(evaluator, 0.59) == pytest.approx(100)
    assert _sweep_miou(evaluator, 0.60) == pytest.approx(100 * (10 / 16 + 0) / 2)  # everything background
    assert "mIoU" not in results  # no background channel
    assert results["IoU-a"] == pytest.approx(100)  # per-class values of the best threshold
    saved = json.loads((tmp_path / "out" / "cam_evaluation.json").read_text())
    assert len(saved["sweep_mIoU"]) == 96 and saved["results"]["best_threshold"] == pytest.approx(0.3)
    assert np.load(tmp_path / "out" / "cam_confusion.npz")["sweep"].shape == (96, 2, 2)

    # off-grid scores: the perfect thresholds are 0.31..0.60, and the first one is reported
    evaluator.reset()
    evaluator.process(records, [_output(np.where(gt == 1, 0.6049, 0.3049)[None], [1])])
    results = evaluator.evaluate()["cam"]
    assert results["best_threshold"] == pytest.approx(0.31) and results["mIoU@best"] == pytest.approx(100)
    assert _sweep_miou(evaluator, 0.60) == pytest.approx(100)


def _random_case(seed, num_classes, with_background, sizes=((7, 9), (5, 6), (8, 3))):
    """(gt, maps, cam_labels, image_labels) per image; maps on a 0.05 grid so that ties occur."""
    rng = np.random.RandomState(seed)
    images = []
    for h, w in sizes:
        gt = rng.randint(0, num_classes, (h, w))
        gt[rng.rand(h, w) < 0.15] = 255
        present = np.sort(rng.choice(np.arange(1, num_classes), rng.randint(1, num_classes), replace=False))
        cam_labels = np.arange(num_classes) if with_background else np.arange(1, num_classes)  # all classes
        maps = (rng.randint(0, 21, (len(cam_labels), h, w)) * 0.05).astype(np.float32)
        images.append((gt, maps, cam_labels, present.tolist()))
    return images


def _naive_confusions(images, thresholds, multipliers, num_classes, with_background):
    """Recompute every setting separately, with np.argmax over explicitly stacked channels."""
    K = num_classes

    def confusion(gt, pred):
        matrix = np.zeros((K, K), np.int64)
        valid = gt != 255
        np.add.at(matrix, (gt[valid], pred[valid]), 1)
        return matrix

    sweep = np.zeros((len(thresholds), K, K), np.int64)
    argmax = np.zeros((K, K), np.int64)
    multiplier = np.zeros((len(multipliers), K, K), np.int64)
    for gt, maps, cam_labels, present in images:
        keep = np.isin(cam_labels, [0] + present)
        maps, cam_labels = maps[keep], cam_labels[keep]
        fg_maps, fg_labels = (maps[1:], cam_labels[1:]) if with_background else (maps, cam_labels)
        for t, tau in enumerate(thresholds):
            stacked = np.concatenate([np.full((1,) + gt.shape, tau, np.float32), fg_maps])
            sweep[t] += confusion(gt, np.concatenate([[0], fg_labels])[np.argmax(stacked, 0)])
        if with_background:
            argmax += confusion(gt, cam_labels[np.argmax(maps, 0)])
            for i, beta in enumerate(multipliers):
                scaled = maps.copy()
                scaled[0] *= np.float32(beta)
                multiplier[i] += confusion(gt, cam_labels[np.argmax(scaled, 0)])
    return sweep, argmax, multiplier


@pytest.mark.parametrize("with_background", [True, False])
def test_one_pass_sweep_equals_per_threshold_recomputation(tmp_path, with_background):
    K, multipliers = 5, [0.3, 0.5, 1.0, 1.5]
    images = _random_case(0, K, with_background)
    evaluator, records = _evaluator(
        tmp_path, "_cam_random", [image[0] for image in images], CLASSES, bg_multipliers=multipliers
    )
    for record, (gt, maps, cam_labels, present) in zip(records, images):
        evaluator.process([dict(record, image_labels=present)], [_output(maps, cam_labels)])
    sweep, argmax, multiplier = _naive_confusions(images, evaluator.thresholds, multipliers, K, with_background)
    confusions = evaluator.confusion_matrices()
    assert confusions["sweep"].shape == (96, K, K) and (confusions["sweep"] == sweep).all()
    if with_background:
        assert (confusions["argmax"] == argmax).all()
        assert (confusions["bg_multiplier"] == multiplier).all()
        assert (confusions["bg_multiplier"][2] == confusions["argmax"]).all()  # β = 1 is the argmax mode
    else:
        assert confusions["argmax"] is None and confusions["bg_multiplier"] is None
    assert sweep.sum() == sum((image[0] != 255).sum() for image in images) * 96


def test_background_multiplier(tmp_path):
    gt = np.array([[0, 0, 1, 1]])
    maps = np.array([[[0.8, 0.5, 0.4, 0.1]], [[0.2, 0.55, 0.5, 0.9]]])  # background, foreground
    evaluator, records = _evaluator(tmp_path, "_cam_beta", [gt], CLASSES[:2], bg_multipliers=[0.5, 1.0, 1.2, 1.5])
    evaluator.process(records, [_output(maps, [0, 1])])
    results = evaluator.evaluate()["cam"]
    # β = 0.5 and 1: [0, 1, 1, 1] -> IoU 1/2, 2/3; β = 1.2: [0, 0, 1, 1] exact; β = 1.5: [0, 0, 0, 1] -> 2/3, 1/2
    assert results["mIoU"] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    assert results["best_bg_multiplier"] == pytest.approx(1.2) and results["mIoU@best_bg_multiplier"] == 100
    # the sweep ignores the background channel: τ in [0.20, 0.50) and [0.55, 0.90) both give 58.33,
    # the first wins; τ = 0.15 predicts everything foreground
    assert results["best_threshold"] == pytest.approx(0.20)
    assert results["mIoU@best"] == pytest.approx(100 * (1 / 2 + 2 / 3) / 2)
    assert results["mIoU@0.15"] == pytest.approx(100 * (0 + 2 / 4) / 2)
    # per-class values describe the argmax mode
    assert results["IoU-a"] == pytest.approx(200 / 3) and results["Precision-a"] == pytest.approx(200 / 3)
    assert results["Recall-a"] == pytest.approx(100)


def test_classes_absent_from_gt_and_prediction_are_skipped(tmp_path):
    gt = np.array([[0, 1, 1, 0]])
    maps = np.array([[[0.9, 0.1, 0.1, 0.9]], [[0.0, 0.8, 0.2, 0.0]], [[0.0, 0.0, 0.7, 0.0]]])
    evaluator, records = _evaluator(tmp_path, "_cam_absent", [gt], CLASSES[:4])
    evaluator.process(records, [_output(maps, [0, 1, 2])])  # prediction [0, 1, 2, 0]
    results = evaluator.evaluate()["cam"]
    assert math.isnan(results["IoU-c"]) and math.isnan(results["Precision-c"])  # neither GT nor prediction
    assert results["IoU-b"] == 0.0 and math.isnan(results["Recall-b"])  # predicted, not in the GT: counts as 0
    assert results["mIoU"] == pytest.approx(100 * (1 + 1 / 2 + 0) / 3)


@pytest.mark.parametrize("image_labels", [[1], torch.tensor([1.0, 1.0, 0.0, 0.0])])
def test_image_labels_drop_the_maps_of_absent_classes(tmp_path, image_labels):
    gt = np.array([[0, 1, 1, 0]])
    maps = np.array([[[0.9, 0.1, 0.1, 0.9]], [[0.0, 0.8, 0.2, 0.0]], [[0.0, 0.0, 0.7, 0.0]]])
    evaluator, records = _evaluator(tmp_path, "_cam_tags", [gt], CLASSES[:4])
    evaluator.process([dict(records[0], image_labels=image_labels)], [_output(maps, [0, 1, 2])])
    # without b's map, pixel 2 is argmax(background 0.1, a 0.2) = a: a perfect prediction
    assert (evaluator.confusion_matrices()["argmax"][:2, :2] == np.array([[2, 0], [0, 2]])).all()
    assert evaluator.evaluate()["cam"]["mIoU"] == pytest.approx(100)


def test_errors_name_the_file(tmp_path):
    gt = np.zeros((2, 3), np.int64)
    evaluator, records = _evaluator(tmp_path, "_cam_errors", [gt], CLASSES[:3])
    good = np.full((2, 2, 3), 0.5)
    missing = dict(records[0], sem_seg_file_name=str(tmp_path / "nowhere.png"))
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        evaluator.process([missing], [_output(good, [0, 1])])
    shapes = r"_cam_errors_0.jpg have shape \(2, 3, 2\) .*_cam_errors_0.png has shape \(2, 3\)"
    with pytest.raises(ValueError, match=shapes):
        evaluator.process(records, [_output(np.zeros((2, 3, 2)), [0, 1])])
    with pytest.raises(ValueError, match=r"_cam_errors_0.jpg: cam_labels \[0, 5\] outside the class ids 0..2"):
        evaluator.process(records, [_output(good, [0, 5])])
    with pytest.raises(ValueError, match=r"_cam_errors_0.jpg: the background class 0 must be the first"):
        evaluator.process(records, [_output(good, [1, 0])])
    with pytest.raises(ValueError, match=r"_cam_errors_0.jpg:.*'cams' \(C, H, W\) and 'cam_labels'"):
        evaluator.process(records, [{"sem_seg": torch.zeros(3, 2, 3)}])
    evaluator.process(records, [_output(good, [0, 1])])
    mixed = r"_cam_errors_0.jpg have no background channel .* earlier images' maps had one"
    with pytest.raises(ValueError, match=mixed):
        evaluator.process(records, [_output(good, [1, 2])])
    # the same check on matrices gathered from processes that saw different kinds
    state = dict(evaluator._state(), with_background=3, without_background=2)
    with pytest.raises(ValueError, match="_cam_errors: 3 images had maps with a background channel and 2 without"):
        evaluator.confusion_matrices(state)


def test_construction_errors(tmp_path):
    _register("_cam_unlabelled", [{"file_name": "x.jpg"}], CLASSES[:2])
    with pytest.raises(ValueError, match="_cam_unlabelled: 1 of its images have no label map.*x.jpg"):
        CAMEvaluator("_cam_unlabelled", distributed=False)
    _register("_cam_no_bg", [], CLASSES[:2], background_class=None)
    with pytest.raises(ValueError, match="_cam_no_bg needs a background class"):
        CAMEvaluator("_cam_no_bg", distributed=False)
    _register("_cam_cfg", [], CLASSES[:2])
    with pytest.raises(ValueError, match=r"TEST.CAM_EVAL.THRESHOLDS.*\[0.5, 0.1, 0.01\]"):
        CAMEvaluator("_cam_cfg", distributed=False, thresholds=(0.5, 0.1, 0.01))
    with pytest.raises(ValueError, match=r"TEST.CAM_EVAL.BG_MULTIPLIERS.*\[0.5, -1\]"):
        CAMEvaluator("_cam_cfg", distributed=False, bg_multipliers=[0.5, -1])


def test_built_from_config_with_defaults_and_overrides():
    _register("_cam_cfg", [], CLASSES[:2])
    cfg = get_wss_cfg()
    evaluator = CAMEvaluator(cfg, "_cam_cfg", distributed=False)  # TEST.CAM_EVAL's defaults
    assert len(evaluator.thresholds) == 96 and len(evaluator.bg_multipliers) == 0
    cfg.merge_from_list(["TEST.CAM_EVAL.THRESHOLDS", [0.1, 0.5, 0.2], "TEST.CAM_EVAL.BG_MULTIPLIERS", [0.5, 1.0]])
    evaluator = CAMEvaluator(cfg, "_cam_cfg", distributed=False)
    assert evaluator.thresholds.tolist() == [0.1, 0.15, 0.3, 0.5]  # IRN's 0.15 always evaluated
    assert evaluator.bg_multipliers.tolist() == [0.5, 1.0]


def test_runs_under_inference_on_dataset(tmp_path):
    images = _random_case(1, 5, True)
    evaluator, records = _evaluator(tmp_path, "_cam_loop", [image[0] for image in images], CLASSES)
    outputs = {record["file_name"]: _output(maps, labels) for record, (_, maps, labels, _) in zip(records, images)}

    class CAMModel(torch.nn.Module):
        def forward(self, batched_inputs):
            return [outputs[x["file_name"]] for x in batched_inputs]

    results = inference_on_dataset(CAMModel(), [[record] for record in records], evaluator)
    _, argmax, _ = _naive_confusions(
        [(gt, maps, labels, list(range(1, 5))) for gt, maps, labels, _ in images], [0.15], [], 5, True
    )
    tp = np.diag(argmax)
    union = argmax.sum(0) + argmax.sum(1) - tp
    assert results["cam"]["mIoU"] == pytest.approx(100 * np.mean(tp[union > 0] / union[union > 0]))


# -------------------------------------------------------------------- 2 processes over GLOO


def _gloo_worker(rank, port, name, records, images, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        _register(name, records, CLASSES)
        evaluator = CAMEvaluator(name, distributed=True, bg_multipliers=[0.5, 1.0])
        for i, (record, (_, maps, labels, present)) in enumerate(zip(records, images)):
            if i % 2 == rank:
                evaluator.process([dict(record, image_labels=present)], [_output(maps, labels)])
        results = evaluator.evaluate()
        with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as f:
            pickle.dump(results, f)
        # rank 0 hosts the TCP store: tearing down while rank 1 is still in it can abort rank 1
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_gather_equals_one_process(tmp_path):
    images = _random_case(2, 5, True, sizes=((7, 9), (5, 6), (8, 3), (6, 6), (4, 7)))
    evaluator, records = _evaluator(
        tmp_path, "_cam_gloo", [image[0] for image in images], CLASSES, bg_multipliers=[0.5, 1.0]
    )
    for record, (_, maps, labels, present) in zip(records, images):
        evaluator.process([dict(record, image_labels=present)], [_output(maps, labels)])
    single = evaluator.evaluate()["cam"]

    torch.multiprocessing.spawn(
        _gloo_worker, args=(_free_port(), "_cam_gloo", records, images, str(tmp_path)), nprocs=2, join=True
    )
    with open(tmp_path / "rank1.pkl", "rb") as f:
        assert pickle.load(f) is None  # only the main process reports
    with open(tmp_path / "rank0.pkl", "rb") as f:
        gathered = pickle.load(f)["cam"]
    assert list(gathered) == list(single)
    for key, value in single.items():
        assert gathered[key] == pytest.approx(value, abs=1e-12, nan_ok=True), key
