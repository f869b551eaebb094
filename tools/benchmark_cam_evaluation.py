"""
Per-image cost of CAMEvaluator.process (argmax + 96-threshold sweep + background multipliers)
on VOC-sized (500x375, 21 classes) and COCO-sized (640x480, 81 classes) random inputs, and the
cost of evaluate(). Usage: python tools/benchmark_cam_evaluation.py [--images N]
"""
import argparse
import os
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from wss_d2.evaluation.cam_evaluation import CAMEvaluator


def bench(name, num_classes, height, width, images, multipliers, folder):
    rng = np.random.RandomState(0)
    records, outputs = [], []
    for i in range(images):
        gt = rng.randint(0, num_classes, (height, width)).astype(np.uint8)
        path = os.path.join(folder, f"{name}_{i}.png")
        Image.fromarray(gt, mode="L").save(path)
        present = np.sort(rng.choice(np.arange(1, num_classes), 3, replace=False))
        labels = np.concatenate([[0], present])
        outputs.append({"cams": torch.rand(len(labels), height, width), "cam_labels": torch.as_tensor(labels)})
        records.append({"file_name": f"{name}_{i}.jpg", "sem_seg_file_name": path})
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(stuff_classes=[f"c{k}" for k in range(num_classes)], ignore_label=255,
                                  background_class=0)
    evaluator = CAMEvaluator(name, distributed=False, bg_multipliers=multipliers)
    start = time.perf_counter()
    for record, output in zip(records, outputs):
        evaluator.process([record], [output])
    per_image = (time.perf_counter() - start) / images
    start = time.perf_counter()
    evaluator.evaluate()
    evaluate = time.perf_counter() - start
    print(f"{name}: K={num_classes} {width}x{height}, {len(evaluator.thresholds)} thresholds, "
          f"{len(multipliers)} multipliers: process {1000 * per_image:.1f} ms/image, evaluate {1000 * evaluate:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        for multipliers in ([], [0.3, 0.5, 0.7, 1.0, 1.2, 1.5]):
            tag = len(multipliers)
            bench(f"voc_like_{tag}", 21, 375, 500, args.images, multipliers, folder)
            bench(f"coco_like_{tag}", 81, 480, 640, args.images, multipliers, folder)
