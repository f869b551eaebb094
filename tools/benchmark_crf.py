#!/usr/bin/env python
"""
Benchmark dense CRF post-processing (wss_d2.inference.DenseCRF / DenseCRFPool): images/s on
VOC-sized inputs (375x500, 21 classes, synthetic but structured), 1 worker vs all cores, as an
ordered map (pseudo-label export) and in the test-time asynchronous mode. A benchmark, not a test:
it prints figures and asserts nothing.

    python tools/benchmark_crf.py                       # 20 images, workers 1 and all cores
    python tools/benchmark_crf.py --workers 1 2 4 --model-ms 300 --json crf.json
    python tools/benchmark_crf.py TEST.CRF.ITERATIONS 1   # another parameter set (config overrides)

Modes:
  map        DenseCRFPool(num_workers=N).map over a lazy generator (pool start-up not counted).
  map-labels the same with argmax=True: workers send back (H, W) uint8 labels (pseudo-label export).
  test-time  a loop that "predicts" each image (sleeps --model-ms, like a GPU forward pass that
             leaves the CPU free), then runs the CRF: inline for 1 worker, with
             submit()/results()/drain() for N > 1, so the CRF overlaps the next prediction.
Columns: images/s (wall clock), CPU seconds per image in the main process and in the workers,
and cores used = all CPU seconds / wall seconds (below N when other programs share the cores:
compare it, and the 1-min load printed, before reading a speed-up).
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wss_d2 import get_wss_cfg  # noqa: E402
from wss_d2.inference.crf import DenseCRF, DenseCRFPool, _default_workers  # noqa: E402

HEIGHT, WIDTH, NUM_CLASSES = 375, 500, 21


def synthetic_case(seed: int):
    """
    A VOC-sized RGB image of a few coloured ellipses on a shaded background (with noise), and a
    softmax map as a stride-8 network would give: noisy logits of the true layout at 1/8 size,
    bilinearly upsampled (blurred, blocky boundaries), so the CRF has edges to snap to.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    labels = np.zeros((HEIGHT, WIDTH), np.int64)
    image = np.stack([xx * 0.2 + 40, yy * 0.3 + 60, np.full_like(xx, 90.0)], axis=-1)
    for _ in range(rng.integers(2, 5)):
        cy, cx = rng.uniform(0.2, 0.8) * HEIGHT, rng.uniform(0.2, 0.8) * WIDTH
        ry, rx = rng.uniform(0.1, 0.3) * HEIGHT, rng.uniform(0.1, 0.3) * WIDTH
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        labels[inside] = rng.integers(1, NUM_CLASSES)
        image[inside] = rng.uniform(0, 255, 3)
    image = (image + rng.normal(0, 6, image.shape)).clip(0, 255).astype(np.uint8)

    one_hot = F.one_hot(torch.from_numpy(labels), NUM_CLASSES).permute(2, 0, 1)[None].float()
    small = F.avg_pool2d(one_hot, 8, ceil_mode=True)
    logits = 6 * small + torch.from_numpy(rng.normal(0, 1.0, small.shape)).float()
    logits = F.interpolate(logits, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)
    probs = torch.softmax(logits[0], dim=0).numpy()
    return image, np.ascontiguousarray(probs, dtype=np.float32), labels


def children_cpu_seconds():
    """CPU time of this process's reaped children (the pool's workers, once the pool is joined)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_map(crf, cases, workers, argmax=False):
    workers_cpu_start = children_cpu_seconds()
    with DenseCRFPool(crf, num_workers=workers, argmax=argmax) as pool:
        start, cpu_start = time.perf_counter(), time.process_time()
        count = sum(1 for _ in pool.map((image, probs) for image, probs, _ in cases))
        seconds, main_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return count, seconds, main_cpu, children_cpu_seconds() - workers_cpu_start


def run_test_time(crf, cases, workers, model_seconds):
    workers_cpu_start = children_cpu_seconds()
    with DenseCRFPool(crf, num_workers=workers) as pool:
        start, cpu_start = time.perf_counter(), time.process_time()
        count = 0
        for index, (image, probs, _) in enumerate(cases):
            time.sleep(model_seconds)  # the model's forward pass for this image
            pool.submit(index, image, probs)
            count += sum(1 for _ in pool.results())
        count += sum(1 for _ in pool.drain())
        seconds, main_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return count, seconds, main_cpu, children_cpu_seconds() - workers_cpu_start


def pixel_accuracy(crf, cases):
    """Accuracy of argmax before / after the CRF on the first few cases (sanity check of the inputs)."""
    before = after = total = 0
    for image, probs, labels in cases[:3]:
        before += (probs.argmax(0) == labels).sum()
        after += (crf(image, probs).argmax(0) == labels).sum()
        total += labels.size
    return before / total, after / total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="default: 1 and all cores")
    parser.add_argument("--model-ms", type=float, default=300.0, help="simulated model time per image (test-time mode)")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="TEST.CRF.* KEY VALUE overrides")
    args = parser.parse_args()

    load_at_start = round(os.getloadavg()[0], 2)
    cfg = get_wss_cfg(opts=args.opts)
    crf = DenseCRF(cfg)
    all_cores = _default_workers()
    workers = args.workers or sorted({1, all_cores})
    cases = [synthetic_case(seed) for seed in range(args.num_images)]
    accuracy_before, accuracy_after = pixel_accuracy(crf, cases)

    rows = []
    for mode in ("map", "map-labels", "test-time"):
        for n in workers:
            if mode == "test-time":
                count, seconds, main_cpu, workers_cpu = run_test_time(crf, cases, n, args.model_ms / 1000)
            else:
                count, seconds, main_cpu, workers_cpu = run_map(crf, cases, n, argmax=mode == "map-labels")
            rows.append({"mode": mode, "workers": n, "images": count, "seconds": round(seconds, 3),
                         "images_per_s": round(count / seconds, 3),
                         "main_process_cpu_s_per_image": round(main_cpu / count, 4),
                         "workers_cpu_s_per_image": round(workers_cpu / count, 4),
                         # CPU seconds per wall second: ~N when N workers each had a core to themselves
                         "cores_used": round((main_cpu + workers_cpu) / seconds, 2)})

    figures = {
        "crf": repr(crf),
        "input": f"{HEIGHT}x{WIDTH} RGB, {NUM_CLASSES} classes",
        "cores_available": all_cores,
        "load_average_1min_at_start": load_at_start,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "model_ms": args.model_ms,
        "pixel_accuracy_before_after": [round(float(accuracy_before), 4), round(float(accuracy_after), 4)],
        "runs": rows,
    }
    print(figures["crf"], f"| {figures['input']} | {all_cores} cores | 1-min load at start/end "
          f"{figures['load_average_1min_at_start']}/{figures['load_average_1min_at_end']}")
    print(f"pixel accuracy of argmax before -> after CRF (3 images): {accuracy_before:.4f} -> {accuracy_after:.4f}")
    print(f"{'mode':<10} {'workers':>7} {'images':>6} {'seconds':>8} {'images/s':>9} "
          f"{'main CPU s/img':>15} {'worker CPU s/img':>17} {'cores used':>11}")
    for row in rows:
        print(f"{row['mode']:<10} {row['workers']:>7} {row['images']:>6} {row['seconds']:>8.2f} "
              f"{row['images_per_s']:>9.2f} {row['main_process_cpu_s_per_image']:>15.3f} "
              f"{row['workers_cpu_s_per_image']:>17.3f} {row['cores_used']:>11.2f}")
    if args.model_ms:
        print(f"(test-time: {args.model_ms:.0f} ms simulated model time per image; 1 worker runs model + CRF in turn)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
