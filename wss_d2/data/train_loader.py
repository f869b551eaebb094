"""
The training data stream of wss_d2: batch i of a run is a pure function of (seed, i), so that
`--resume` from a checkpoint of iteration i - 1 trains on exactly the batches an uninterrupted
run would have seen, whatever the number of loader workers.

detectron2's loader cannot resume: its sampler restarts the index stream from the seed, the
workers' augmentation RNGs restart with them, and aspect-ratio grouping keeps a partial batch
in memory. Here:

  * the index stream is the concatenation of per-epoch permutations, each seeded by (seed,
    epoch), so position p of the stream is computed directly;
  * process r of W takes positions (i * W + r) * B ... + B - 1 for its batch i (B images per
    process), and DataLoader worker w of N maps the batches i with i mod N == w (whole batches,
    returned in order);
  * every sample is mapped under RNGs (python, numpy, torch) seeded by (seed, position), so its
    crop, flip and colour draw do not depend on which worker maps it or on what came before;
  * an image the mapper skips (it returns None, e.g. an empty weak label) is replaced by
    another image drawn from (seed, position, attempt), the same on every run.

Batches are not grouped by aspect ratio: segmentation crops share one size, so grouping only
delays images. The model's own randomness (dropout) is seeded per iteration by the trainer
(`step_seed`).
"""
import contextlib
import logging
import random
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.utils.data as torchdata

from detectron2.data import DatasetFromList, get_detection_dataset_dicts
from detectron2.utils import comm

__all__ = ["ResumableTrainLoader", "derived_seed", "isolated_rng", "seed_all", "step_seed", "build_resumable_train_loader"]

logger = logging.getLogger(__name__)

# purposes of derived seeds: one stream each
_EPOCH, _SAMPLE, _FALLBACK, _STEP = 0, 1, 2, 3
MAX_ATTEMPTS = 1000


def derived_seed(*values: int) -> int:
    """A 32-bit seed from a tuple of non-negative integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, dtype=np.uint32)[0])


def seed_all(seed: int) -> None:
    """Seed python's, numpy's and torch's (CPU and every GPU) global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _seed_cpu(seed: int) -> None:
    """seed_all for the CPU generators only (torch.manual_seed also seeds every GPU: 100x slower)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)


@contextlib.contextmanager
def isolated_rng(seed: Optional[int] = None, restore: bool = True):
    """Run a block with the global CPU generators seeded by `seed` (None: as they are), then
    restore their states (unless `restore` is False: nothing else uses them, e.g. in a loader
    worker process)."""
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state()) if restore else None
    if seed is not None:
        _seed_cpu(seed)
    try:
        yield
    finally:
        if restore:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])


def step_seed(seed: int, rank: int, iteration: int) -> int:
    """The seed of the model's randomness at one training iteration of one process."""
    return derived_seed(seed, _STEP, rank, iteration)


class _BatchStream(torchdata.IterableDataset):
    """This process's batches from `start_iter` on, each computed from (seed, iteration)."""

    def __init__(self, dataset: Sequence[Dict], mapper: Callable, batch_size: int, seed: int, start_iter: int,
                 rank: int, world_size: int, shuffle: bool, dataset_names: Sequence[str]):
        self.dataset = dataset
        self.mapper = mapper
        self.batch_size = batch_size
        self.seed = seed
        self.start_iter = start_iter
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.dataset_names = list(dataset_names)
        self._epoch, self._order = None, None
        self._restore_rng = True

    def __iter__(self):
        info = torchdata.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # in the main process the global generators are also the model's: put them back after each image
        self._restore_rng = info is None
        iteration = self.start_iter + worker
        while True:
            yield self.batch(iteration)
            iteration += workers

    def batch(self, iteration: int) -> List[Dict]:
        first = (iteration * self.world_size + self.rank) * self.batch_size
        return [self.sample(first + j) for j in range(self.batch_size)]

    def index(self, position: int) -> int:
        """The dataset index at `position` of the infinite stream of epochs."""
        epoch, offset = divmod(position, len(self.dataset))
        if epoch != self._epoch:
            if self.shuffle:
                generator = torch.Generator().manual_seed(derived_seed(self.seed, _EPOCH, epoch))
                self._order = torch.randperm(len(self.dataset), generator=generator)
            else:
                self._order = torch.arange(len(self.dataset))
            self._epoch = epoch
        return int(self._order[offset])

    def sample(self, position: int) -> Dict:
        index = self.index(position)
        for attempt in range(MAX_ATTEMPTS):
            if attempt:  # the mapper skipped the image: a replacement, the same on every run
                index = int(np.random.default_rng(derived_seed(self.seed, _FALLBACK, position, attempt))
                            .integers(len(self.dataset)))
            with isolated_rng(derived_seed(self.seed, _SAMPLE, position, attempt), restore=self._restore_rng):
                mapped = self.mapper(self.dataset[index])
            if mapped is not None:
                return mapped
        raise RuntimeError(
            f"The training mapper skipped {MAX_ATTEMPTS} images of {self.dataset_names} in a row (the last: "
            f"{self.dataset[index].get('file_name', index)}); the training set has (almost) no usable image"
        )


def _as_is(batch):
    return batch


class ResumableTrainLoader:
    """
    Iterable of training batches (lists of mapped dicts, `batch_size` per process). Nothing is
    read until the first batch is asked for, so the trainer can set `start_iter` and `seed`
    from a checkpoint after building it.
    """

    def __init__(self, dataset: Sequence[Dict], mapper: Callable, *, total_batch_size: int, seed: int,
                 num_workers: int = 0, shuffle: bool = True, dataset_names: Sequence[str] = ()):
        world_size = comm.get_world_size()
        if total_batch_size <= 0 or total_batch_size % world_size:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH ({total_batch_size}) must be a positive multiple of the number of "
                f"processes ({world_size})"
            )
        if len(dataset) == 0:
            raise ValueError(f"The training set {list(dataset_names)} is empty")
        self.dataset = dataset if isinstance(dataset, DatasetFromList) else DatasetFromList(list(dataset), copy=False)
        self.mapper = mapper
        self.batch_size = total_batch_size // world_size
        self.seed = seed
        self.start_iter = 0
        self.num_workers = num_workers
        self.shuffle = shuffle
        self.dataset_names = list(dataset_names)

    def stream(self) -> _BatchStream:
        return _BatchStream(self.dataset, self.mapper, self.batch_size, self.seed, self.start_iter,
                            comm.get_rank(), comm.get_world_size(), self.shuffle, self.dataset_names)

    def __iter__(self):
        loader = torchdata.DataLoader(self.stream(), batch_size=None, num_workers=self.num_workers,
                                      collate_fn=_as_is, pin_memory=False)
        with isolated_rng():  # starting the loader draws from torch's RNG, which is the model's
            batches = iter(loader)
        yield from batches


def build_resumable_train_loader(cfg, mapper, seed: Optional[int] = None) -> ResumableTrainLoader:
    """The training loader of cfg.DATASETS.TRAIN (SOLVER.IMS_PER_BATCH in all, DATALOADER.NUM_WORKERS)."""
    sampler = cfg.DATALOADER.SAMPLER_TRAIN
    if sampler != "TrainingSampler":
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN={sampler!r}: wss_d2's resumable training loader draws every image "
            "equally often ('TrainingSampler')"
        )
    names = list(cfg.DATASETS.TRAIN)
    dicts = get_detection_dataset_dicts(names, filter_empty=False)
    return ResumableTrainLoader(
        dicts, mapper, total_batch_size=cfg.SOLVER.IMS_PER_BATCH, seed=seed if seed is not None else 0,
        num_workers=cfg.DATALOADER.NUM_WORKERS, dataset_names=names,
    )
