"""WSSSemSegEvaluator: mIoU as torchmetrics computes it, weak-shot metrics by hand, errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from wss_d2.evaluation import WSSSemSegEvaluator, segmentation_metrics


def _register(name, records, classes, **meta):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(stuff_classes=classes, ignore_label=255, evaluator_type="sem_seg", **meta)


def _evaluate(tmp_path, name, labels, preds, num_classes, **meta):
    records = []
    for i, label in enumerate(labels):
        path = str(tmp_path / f"{name}_{i}.png")
        Image.fromarray(label.astype(np.uint8), mode="L").save(path)
        records.append({"file_name": f"img{i}.jpg", "sem_seg_file_name": path})
    _register(name, records, [f"c{k}" for k in range(num_classes)], **meta)
    evaluator = WSSSemSegEvaluator(name, distributed=False, output_dir=str(tmp_path / "out"))
    evaluator.reset()
    for record, pred in zip(records, preds):
        scores = torch.nn.functional.one_hot(torch.as_tensor(pred), num_classes).permute(2, 0, 1).float()
        evaluator.process([record], [{"sem_seg": scores}])
    return evaluator.evaluate()["sem_seg"]


def test_miou_equals_torchmetrics_jaccard(tmp_path):
    from torchmetrics.classification import MulticlassJaccardIndex

    rng = np.random.RandomState(0)
    K = 7
    labels, preds = [], []
    for h, w in ((20, 30), (15, 11), (9, 40)):
        label = rng.randint(0, 4, (h, w))  # classes 4..6 never in the GT
        label[rng.rand(h, w) < 0.2] = 255
        pred = rng.randint(0, 6, (h, w))  # class 6: absent from both; 4, 5: predicted only
        labels.append(label)
        preds.append(pred)
    results = _evaluate(tmp_path, "_eval_random", labels, preds, K)
    flat_label = torch.as_tensor(np.concatenate([l.ravel() for l in labels]))
    flat_pred = torch.as_tensor(np.concatenate([p.ravel() for p in preds]))
    expected = MulticlassJaccardIndex(num_classes=K, ignore_index=255, average="macro")(flat_pred, flat_label)
    assert results["mIoU"] == pytest.approx(100 * expected.item(), abs=1e-4)
    per_class = MulticlassJaccardIndex(num_classes=K, ignore_index=255, average="none")(flat_pred, flat_label)
    for k in range(6):
        assert results[f"IoU-c{k}"] == pytest.approx(100 * per_class[k].item(), abs=1e-4)
    assert np.isnan(results["IoU-c6"])  # absent from GT and prediction: no IoU, not 0
    assert results["IoU-c4"] == 0.0


def test_weak_shot_metrics_by_hand():
    # classes 0, 1 base; 2, 3 novel; GT rows, prediction columns
    confusion = np.array(
        [
            [8, 2, 0, 0],  # IoU0 = 8 / (10 + 9 - 8) = 8/11
            [1, 4, 1, 0],  # IoU1 = 4 / (6 + 7 - 4) = 4/9
            [0, 1, 3, 0],  # IoU2 = 3 / (4 + 4 - 3) = 3/5
            [0, 0, 0, 0],  # class 3 absent from GT and prediction
        ]
    )
    results = segmentation_metrics(confusion, ["a", "b", "c", "d"], base_classes=[0, 1], novel_classes=[2, 3])
    base = (8 / 11 + 4 / 9) / 2
    novel = 3 / 5  # class 3 has no GT: left out of the novel mean
    assert results["mIoU"] == pytest.approx(100 * (8 / 11 + 4 / 9 + 3 / 5) / 3)
    assert results["mIoU-base"] == pytest.approx(100 * base)
    assert results["mIoU-novel"] == pytest.approx(100 * novel)
    assert results["hIoU"] == pytest.approx(100 * 2 * base * novel / (base + novel))
    assert results["pACC"] == pytest.approx(100 * 15 / 20)
    assert results["fwIoU"] == pytest.approx(100 * (10 * 8 / 11 + 6 * 4 / 9 + 4 * 3 / 5) / 20)
    assert results["mACC"] == pytest.approx(100 * (8 / 10 + 4 / 6 + 3 / 4) / 3)
    # a class predicted but absent from the GT counts as 0 in mIoU (the denominator rule)
    confusion[0, 3] = 2
    results = segmentation_metrics(confusion, ["a", "b", "c", "d"], [0, 1], [2, 3])
    assert results["IoU-d"] == 0.0
    assert results["mIoU"] == pytest.approx(100 * (8 / 13 + 4 / 9 + 3 / 5 + 0) / 4)  # GT0 is now 12
    assert results["mIoU-novel"] == pytest.approx(100 * 3 / 5)  # novel mean: GT-present classes only


def test_weak_shot_metrics_through_the_evaluator(tmp_path):
    label = np.array([[0, 0, 1, 2], [0, 255, 1, 2]])
    pred = np.array([[0, 1, 1, 2], [0, 0, 1, 1]])
    results = _evaluate(tmp_path, "_eval_ws", [label], [pred], 3, base_classes=(0, 1), novel_classes=(2,))
    # the (1, 1) pixel is ignored; IoU0 = 2/3, IoU1 = 2/(2+4-2), IoU2 = 1/(2+1-1)
    base, novel = 100 * (2 / 3 + 1 / 2) / 2, 100 * 1 / 2
    assert results["mIoU-base"] == pytest.approx(base) and results["mIoU-novel"] == pytest.approx(novel)
    assert results["hIoU"] == pytest.approx(2 * base * novel / (base + novel))
    assert (tmp_path / "out" / "sem_seg_confusion.npy").exists()


def test_split_without_labels_is_refused(tmp_path):
    _register("_eval_unlabelled", [{"file_name": "a.jpg"}], ["x", "y"])
    with pytest.raises(ValueError, match="Cannot evaluate on _eval_unlabelled: 1 of its images have no label map"):
        WSSSemSegEvaluator("_eval_unlabelled", distributed=False)


def test_size_mismatch_and_bad_values_name_the_file(tmp_path):
    path = str(tmp_path / "gt.png")
    Image.fromarray(np.zeros((4, 5), np.uint8), mode="L").save(path)
    _register("_eval_bad", [{"file_name": "a.jpg", "sem_seg_file_name": path}], ["x", "y"])
    evaluator = WSSSemSegEvaluator("_eval_bad", distributed=False)
    with pytest.raises(ValueError, match=r"a.jpg is 6x4 .*gt.png is 5x4"):
        evaluator.process([{"file_name": "a.jpg", "sem_seg_file_name": path}], [{"sem_seg": torch.zeros(2, 4, 6)}])
    Image.fromarray(np.full((4, 5), 7, np.uint8), mode="L").save(path)
    with pytest.raises(ValueError, match=r"gt.png has values \[7\]"):
        evaluator.process([{"file_name": "a.jpg", "sem_seg_file_name": path}], [{"sem_seg": torch.zeros(2, 4, 5)}])


def test_test_time_crf_through_a_worker_pool(tmp_path):
    """TEST.CRF: probabilities blurred across a colour edge are refined on a pool before scoring."""
    from wss_d2.inference import DenseCRF, DenseCRFPool

    h, w = 24, 40
    image = np.zeros((h, w, 3), np.uint8)
    image[:, 20:] = 255
    image_file = str(tmp_path / "edge.png")
    Image.fromarray(image).save(image_file)
    gt = np.zeros((h, w), np.uint8)
    gt[:, 20:] = 1
    gt_file = str(tmp_path / "edge_gt.png")
    Image.fromarray(gt, mode="L").save(gt_file)
    # a soft ramp whose 0.5 crossing sits 6 px left of the edge
    p1 = 1 / (1 + np.exp(-(np.arange(w) - 14) / 3.0))
    logits = torch.as_tensor(np.log(np.stack([1 - p1, p1]) + 1e-6)[:, None, :].repeat(h, 1), dtype=torch.float32)
    records = [{"file_name": image_file, "sem_seg_file_name": gt_file}]
    _register("_eval_crf", records, ["left", "right"])
    results = {}
    for name, crf in (("plain", None), ("crf", lambda: DenseCRFPool(DenseCRF(), num_workers=2))):
        evaluator = WSSSemSegEvaluator("_eval_crf", distributed=False, crf=crf)
        evaluator.reset()
        for _ in range(3):
            evaluator.process(records, [{"sem_seg": logits}])
        results[name] = evaluator.evaluate()["sem_seg"]["mIoU"]
        assert evaluator.crf is None  # the pool is closed after evaluate
    assert results["plain"] < 85 and results["crf"] > 95


def _edge_case(tmp_path, name):
    """A black | white image split at column 20, its GT, and the registered one-image split."""
    h, w = 24, 40
    image = np.zeros((h, w, 3), np.uint8)
    image[:, 20:] = 255
    image_file = str(tmp_path / f"{name}.png")
    Image.fromarray(image).save(image_file)
    gt = np.zeros((h, w), np.uint8)
    gt[:, 20:] = 1
    gt_file = str(tmp_path / f"{name}_gt.png")
    Image.fromarray(gt, mode="L").save(gt_file)
    records = [{"file_name": image_file, "sem_seg_file_name": gt_file}]
    _register(name, records, ["left", "right"])
    return image, records


def _crf_miou(name, records, output):
    from wss_d2.inference import DenseCRF, DenseCRFPool

    evaluator = WSSSemSegEvaluator(name, distributed=False, crf=lambda: DenseCRFPool(DenseCRF(), num_workers=1))
    evaluator.reset()
    evaluator.process(records, [output])
    return evaluator.evaluate()["sem_seg"]["mIoU"]


def test_crf_input_is_the_declared_kind_converted_not_a_guess(tmp_path):
    """
    The evaluator's CRF gets `to_probabilities(sem_seg, kind)` with the kind the output declares
    (none: detectron2's logits). Logits that happen to be non-negative and sum to 1 (here a
    one-hot map whose boundary is 6 px left of the colour edge) are still logits: their softmax
    (0.73 / 0.27) lets the CRF snap the boundary to the edge, taking them as probabilities would not.
    """
    from wss_d2.inference import DenseCRF
    from wss_d2.inference.scores import to_probabilities

    image, records = _edge_case(tmp_path, "_eval_kind")
    left = torch.zeros(24, 40)
    left[:, :14] = 1
    one_hot = torch.stack([left, 1 - left])
    for output in ({"sem_seg": one_hot}, {"sem_seg": one_hot, "sem_seg_kind": "logits"}):
        assert _crf_miou("_eval_kind", records, output) > 95
    # the same map declared as probabilities is used as it is: the CRF cannot move a certain boundary
    assert _crf_miou("_eval_kind", records, {"sem_seg": one_hot, "sem_seg_kind": "probabilities"}) < 80

    # CAM-like scores (constant background 0.15) are divided by their sum, not softmaxed
    cams = torch.stack([torch.full((24, 40), 0.15), 0.6 * (1 - left) + 0.05])
    expected = DenseCRF()(image, to_probabilities(cams, "scores").numpy()).argmax(0)
    softmaxed = DenseCRF()(image, cams.softmax(0).numpy()).argmax(0)
    assert (expected != softmaxed).any()  # the two readings give different labels here
    gt = np.asarray(Image.open(records[0]["sem_seg_file_name"]))
    expected_miou = segmentation_metrics(np.bincount(2 * gt.ravel().astype(int) + expected.ravel(), minlength=4)
                                         .reshape(2, 2), ["left", "right"])["mIoU"]
    assert _crf_miou("_eval_kind", records, {"sem_seg": cams, "sem_seg_kind": "scores"}) == pytest.approx(expected_miou)


def test_unknown_sem_seg_kind_names_the_image(tmp_path):
    _, records = _edge_case(tmp_path, "_eval_bad_kind")
    with pytest.raises(ValueError, match=r"_eval_bad_kind.png: sem_seg kind 'softmax' is not one of"):
        _crf_miou("_eval_bad_kind", records, {"sem_seg": torch.zeros(2, 24, 40), "sem_seg_kind": "softmax"})
