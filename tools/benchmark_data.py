#!/usr/bin/env python
"""
Data-pipeline timings (not a test): the weak-label mapper per weak-label kind with the main
config's training augmentation, and the weak-label simulator, on the synthetic dataset.

    python tools/benchmark_data.py [--images 200] [--json out.json]
"""
import argparse
import json
import os
import tempfile
import time

KINDS = ("", "_tags", "_boxes", "_scribbles", "_points", "_points_json", "_clicks", "_ws")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)

    import numpy as np
    from detectron2.data import DatasetCatalog

    from wss_d2 import get_wss_cfg
    from wss_d2.data import WeakLabelDatasetMapper
    from wss_d2.data.datasets import SYNTHETIC_CLASSES, ensure_synthetic_dataset, load_voc_sem_seg
    from wss_d2.data.weak_labels.kinds import SIMULATED_KINDS
    from wss_d2.data.weak_labels.simulate import write_weak_labels

    config = os.path.join(os.path.dirname(__file__), "..", "configs", "synthetic", "deeplabv3plus_R18.yaml")
    results = {"mapper_ms_per_image": {}, "simulator_images_per_s": {}}
    np.random.seed(0)
    for suffix in KINDS:
        name = "wss_synthetic_train" + suffix
        cfg = get_wss_cfg(config, ["DATASETS.TRAIN", f"('{name}',)"])
        mapper = WeakLabelDatasetMapper(cfg, is_train=True)
        records = DatasetCatalog.get(name)[: args.images]
        start = time.perf_counter()
        for record in records:
            mapper(record)
        results["mapper_ms_per_image"][name] = 1000 * (time.perf_counter() - start) / len(records)
    records = load_voc_sem_seg(ensure_synthetic_dataset(), "train")[: args.images]
    for kind in SIMULATED_KINDS:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            write_weak_labels(records, out, kinds=(kind,), num_classes=len(SYNTHETIC_CLASSES),
                              class_names=SYNTHETIC_CLASSES, scribble_fraction=0.5)
            results["simulator_images_per_s"][kind] = len(records) / (time.perf_counter() - start)
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
