"""
Time and memory of AGMM's GMM terms (docs/agmm.md §3.4): the memory-bounded distance and
centroids of wss_d2 against the broadcast forms of the released code, forward + backward.

    python tools/benchmark_agmm.py [--batch 4] [--classes 21] [--channels 256] [--size 41]
        [--label-size 161] [--labelled 400] [--repeats 3] [--json FILE]

Prints ms per call and the largest single allocation (torch profiler) of each form.
"""
import argparse
import json
import time

import torch
from torch.profiler import ProfilerActivity, profile

from wss_d2.methods.agmm._reference import class_centroids_naive, l1_distances_naive
from wss_d2.methods.agmm.gmm import class_centroids, l1_distances


def measure(fn, repeats):
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    elapsed = (time.perf_counter() - start) / repeats
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    largest = max(event.cpu_memory_usage for event in prof.events())
    return {"ms": 1000 * elapsed, "largest_allocation_MiB": largest / 2**20}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=41, help="feature side (stride 4)")
    parser.add_argument("--label-size", type=int, default=161, help="label side (crop)")
    parser.add_argument("--labelled", type=int, default=400, help="labelled pixels per image")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.manual_seed(0)
    b, k, c, s = args.batch, args.classes, args.channels, args.size
    features = torch.randn(b, c, s, s, requires_grad=True)
    centroids = torch.randn(b, k, c, requires_grad=True)
    labels = torch.full((b, args.label_size, args.label_size), k)
    flat = labels.view(b, -1)
    for i in range(b):
        flat[i, torch.randperm(flat.shape[1])[: args.labelled]] = torch.randint(0, k, (args.labelled,))

    def run(distance_fn, centroid_fn):
        def step():
            features.grad = centroids.grad = None
            mu, _ = centroid_fn(features, labels, k)
            (distance_fn(features, centroids + mu).sum()).backward()

        return step

    results = {
        "shape": {"batch": b, "classes": k, "channels": c, "feature": s, "label": args.label_size},
        "wss_d2": measure(run(l1_distances, class_centroids), args.repeats),
        "broadcast (released code)": measure(run(l1_distances_naive, class_centroids_naive), args.repeats),
    }
    for name in ("wss_d2", "broadcast (released code)"):
        r = results[name]
        print(f"{name:28s} {r['ms']:9.1f} ms  largest allocation {r['largest_allocation_MiB']:8.1f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
