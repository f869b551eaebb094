"""Shared pieces of tools/benchmark_*.py: timing training steps, peak memory, printing the figures."""
import contextlib
import json
import resource
import time
from collections import defaultdict

import torch

__all__ = ["PartTimer", "method_vs_supervised_arguments", "training_batches", "peak_memory_mib", "synchronize", "time_training_steps", "emit_figures"]


def synchronize(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_mib(device):
    """torch's peak allocation on a GPU; the process's peak resident set on CPU."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_training_steps(model, optimizer, batches, warmup, device, storage_iter=None, before_timed=None):
    """
    Mean seconds of forward + backward + optimizer step over `batches[warmup:]`, and the peak memory of
    the phase, warm-up included (GPU: torch's peak allocation; CPU: the growth of the process's peak RSS
    over it). With `storage_iter`, the steps run inside a detectron2 EventStorage at that iteration
    (models that read it); `before_timed()` is called once before the first timed step.
    """
    from detectron2.utils.events import EventStorage

    model.train()
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    before = peak_memory_mib(device)
    times = []
    with EventStorage(storage_iter) if storage_iter is not None else contextlib.nullcontext():
        for i, batch in enumerate(batches):
            if i == warmup and before_timed is not None:
                before_timed()
            synchronize(device)
            start = time.perf_counter()
            losses = model(batch)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    peak = peak_memory_mib(device)
    return sum(times) / max(len(times), 1), peak if str(device).startswith("cuda") else peak - before


def emit_figures(figures, json_path=None):
    """Print the figures as JSON and, with `json_path`, write them there too."""
    print(json.dumps(figures, indent=2))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(figures, f, indent=2)


class PartTimer:
    """Wraps callables and sums their wall time (seconds) per name while `counting` is set."""

    def __init__(self, device):
        self.device, self.totals, self.counting = device, defaultdict(float), False

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            synchronize(self.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            synchronize(self.device)
            if self.counting:
                self.totals[name] += time.perf_counter() - start
            return out

        return timed


def method_vs_supervised_arguments(description, default_config, supervised_config, argv=None):
    """The command line of tools/benchmark_<method>.py: a method's step against a supervised step."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config-file", default=default_config)
    parser.add_argument("--supervised-config", default=supervised_config)
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per step (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides (both configs)")
    return parser.parse_args(argv)


def training_batches(cfg, count):
    """The first `count` batches of the config's training loader (mapped, as the trainer sees them)."""
    from ..engine import Trainer

    loader = iter(Trainer.build_train_loader(cfg))
    return [next(loader) for _ in range(count)]
