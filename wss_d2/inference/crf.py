"""
Dense CRF post-processing (Krähenbühl & Koltun, fully connected CRF with Gaussian edge potentials)
through `pydensecrf`, and a process pool that runs it on every core.

`DenseCRF` refines per-pixel class probabilities (test time, pseudo labels) or a hard label map
(SIPE's "labels as unary" CRF, docs/sipe.md §7.1). `DenseCRFPool` runs a `DenseCRF` over worker
processes, either as an ordered, memory-bounded `map` (pseudo-label export) or asynchronously
(`submit` / `results` / `drain`) so the CRF of one image runs while the model predicts the next.

Parameter sets of the methods, as `TEST.CRF.*` values (ITERATIONS, POS_W, POS_XY_STD, BI_W,
BI_XY_STD, BI_RGB_STD):
    DeepLab test CRF: SIPE's second stage (docs/sipe.md §8.1), SPML (default)   10, 3, 1, 4, 67, 3
    MCC's final multi-scale + flip + CRF evaluation                             10, 1, 1, 4, 121, 5
    SIPE's WideResNet-38 second stage (docs/sipe.md §8.2)                        1, 3, 3, 10, 32, 13
    SIPE's label CRF (docs/sipe.md §7.1; refine_labels, gt_prob 0.7)            10, 3, 3, 10, 50, 5
"""
import logging
import multiprocessing as mp
import os
import sys
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional, Tuple

import numpy as np
from detectron2.config import configurable

__all__ = ["DenseCRF", "DenseCRFPool", "CRFJob", "add_crf_parameters"]

logger = logging.getLogger(__name__)

CONFIG_NODE = "TEST.CRF"


def _config_node(cfg, dotted: str):
    """The config node at `dotted` (e.g. "TEST.CRF"); its keys come from `add_crf_parameters`."""
    node = cfg
    for name in dotted.split("."):
        node = node[name]
    return node


def add_crf_parameters(node, *, iterations, pos_w, pos_xy_std, bi_w, bi_xy_std, bi_rgb_std):
    """
    Set the six keys `DenseCRF.from_config` reads on a config node, so every CRF parameter set
    (TEST.CRF, SIPE's TEST.IR_LABELS) has the same keys with the same meaning.
    """
    # mean-field iterations
    node.ITERATIONS = iterations
    # compat (weight) of the Gaussian smoothness term
    node.POS_W = pos_w
    # spatial std (px) of the Gaussian smoothness term
    node.POS_XY_STD = pos_xy_std
    # compat (weight) of the bilateral appearance term
    node.BI_W = bi_w
    # spatial std (px) of the bilateral term
    node.BI_XY_STD = bi_xy_std
    # colour std of the bilateral term
    node.BI_RGB_STD = bi_rgb_std


def _to_numpy(values, name: str) -> np.ndarray:
    """numpy view of a numpy array or a torch tensor, with a clear error otherwise."""
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu().numpy()
    if not isinstance(values, np.ndarray):
        raise TypeError(f"DenseCRF: {name} must be a numpy array or a torch tensor, got {type(values).__name__}")
    return values


class DenseCRF:
    """
    Fully connected CRF with a Gaussian (appearance-free smoothness) and a bilateral (position + RGB)
    Potts pairwise term, `iterations` mean-field steps. Inputs are at the SAME resolution: a uint8
    RGB image (H, W, 3) and probabilities (K, H, W) (or labels (H, W) for `refine_labels`).
    Defaults are the DeepLab test CRF (docs/sipe.md §8.1; SPML uses the same one).
    """

    @configurable
    def __init__(
        self,
        *,
        iterations: int = 10,
        pos_w: float = 3.0,
        pos_xy_std: float = 1.0,
        bi_w: float = 4.0,
        bi_xy_std: float = 67.0,
        bi_rgb_std: float = 3.0,
        prob_eps: float = 1e-5,
        sum_tolerance: float = 1e-3,
    ):
        """
        Args:
            iterations: mean-field iterations.
            pos_w, pos_xy_std: compat and spatial std (px) of the Gaussian pairwise term.
            bi_w, bi_xy_std, bi_rgb_std: compat, spatial std (px) and colour std of the bilateral term.
            prob_eps: probabilities are clipped to [prob_eps, 1] before the unary −log(p)
                (pydensecrf's `unary_from_softmax` default, MCC's clip).
            sum_tolerance: allowed |Σ_k p_k − 1| per pixel; probabilities are also checked to lie
                in [−tol, 1 + tol].
        """
        if iterations < 1:
            raise ValueError(f"DenseCRF: iterations must be >= 1, got {iterations}")
        for name, value in (("pos_xy_std", pos_xy_std), ("bi_xy_std", bi_xy_std), ("bi_rgb_std", bi_rgb_std)):
            if not value > 0:
                raise ValueError(f"DenseCRF: {name} must be > 0, got {value}")
        if not 0 < prob_eps < 1:
            raise ValueError(f"DenseCRF: prob_eps must be in (0, 1), got {prob_eps}")
        self.iterations = int(iterations)
        self.pos_w = float(pos_w)
        self.pos_xy_std = float(pos_xy_std)
        self.bi_w = float(bi_w)
        self.bi_xy_std = float(bi_xy_std)
        self.bi_rgb_std = float(bi_rgb_std)
        self.prob_eps = float(prob_eps)
        self.sum_tolerance = float(sum_tolerance)

    @classmethod
    def from_config(cls, cfg, node: str = CONFIG_NODE):
        """Read `<node>.*` (default TEST.CRF); `node` lets a method keep a second set (e.g. docs/sipe.md §7.1)."""
        crf = _config_node(cfg, node)
        return {
            "iterations": crf.ITERATIONS,
            "pos_w": crf.POS_W,
            "pos_xy_std": crf.POS_XY_STD,
            "bi_w": crf.BI_W,
            "bi_xy_std": crf.BI_XY_STD,
            "bi_rgb_std": crf.BI_RGB_STD,
        }

    def __repr__(self):
        return (
            f"DenseCRF(iterations={self.iterations}, pos_w={self.pos_w}, pos_xy_std={self.pos_xy_std}, "
            f"bi_w={self.bi_w}, bi_xy_std={self.bi_xy_std}, bi_rgb_std={self.bi_rgb_std})"
        )

    # ------------------------------------------------------------------ checks
    @staticmethod
    def check_image(image, what: str, what_shape: Tuple[int, ...]) -> np.ndarray:
        """The image as a C-contiguous uint8 (H, W, 3) array whose (H, W) are the last two of `what_shape`."""
        image = _to_numpy(image, "image")
        if image.dtype != np.uint8:
            raise TypeError(f"DenseCRF: image must be uint8 RGB (H, W, 3), got dtype {image.dtype}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"DenseCRF: image must be (H, W, 3) RGB, got shape {tuple(image.shape)}")
        if tuple(image.shape[:2]) != tuple(what_shape[-2:]):
            raise ValueError(
                f"DenseCRF: image of shape {tuple(image.shape)} and {what} of shape {tuple(what_shape)} "
                "differ in (H, W); "
                f"resize the image or the {what} so that both have the same resolution"
            )
        image = np.ascontiguousarray(image)
        # pydensecrf takes a writable buffer; arrays read through PIL (np.asarray) are read-only
        return image if image.flags.writeable else image.copy()

    def check_probs(self, probs) -> np.ndarray:
        """The probabilities as float32 (K, H, W), after checking shape, NaN and normalisation."""
        probs = _to_numpy(probs, "probs")
        if probs.ndim != 3 or min(probs.shape) < 1:
            raise ValueError(f"DenseCRF: probs must be (K, H, W) class probabilities, got shape {tuple(probs.shape)}")
        if not np.issubdtype(probs.dtype, np.floating):
            raise TypeError(f"DenseCRF: probs must be floating point, got dtype {probs.dtype}")
        probs = probs.astype(np.float32, copy=False)
        if np.isnan(probs).any():
            count = int(np.isnan(probs).sum())
            raise ValueError(f"DenseCRF: probs of shape {tuple(probs.shape)} contain {count} NaN values")
        tol = self.sum_tolerance
        low, high = float(probs.min()), float(probs.max())
        if low < -tol or high > 1 + tol:
            raise ValueError(
                f"DenseCRF: probs must lie in [0, 1], got values in [{low:.4g}, {high:.4g}] "
                "(logits or CAM scores? convert them with wss_d2.inference.scores.to_probabilities(scores, kind))"
            )
        sums = probs.sum(axis=0)
        worst = np.unravel_index(np.argmax(np.abs(sums - 1)), sums.shape)
        if abs(float(sums[worst]) - 1) > tol:
            raise ValueError(
                f"DenseCRF: probs are not a distribution over the {probs.shape[0]} classes (axis 0) at every pixel: "
                f"sum is {float(sums[worst]):.4g} at (y, x) = {tuple(int(i) for i in worst)} (tolerance {tol}); "
                "convert model scores with wss_d2.inference.scores.to_probabilities(scores, kind)"
            )
        return probs

    # --------------------------------------------------------------- inference
    def _inference(self, image: np.ndarray, unary: np.ndarray) -> np.ndarray:
        """Mean-field Q (K, H, W) float32 for a (K, H·W) unary energy on a checked image."""
        n_labels = unary.shape[0]
        height, width = image.shape[:2]
        # imported here, not at module level, so `import wss_d2` works without pydensecrf
        import pydensecrf.densecrf as dcrf

        crf = dcrf.DenseCRF2D(width, height, n_labels)
        crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
        crf.addPairwiseGaussian(sxy=self.pos_xy_std, compat=self.pos_w)
        crf.addPairwiseBilateral(sxy=self.bi_xy_std, srgb=self.bi_rgb_std, rgbim=image, compat=self.bi_w)
        q = crf.inference(self.iterations)
        return np.asarray(q, dtype=np.float32).reshape(n_labels, height, width)

    def __call__(self, image, probs) -> np.ndarray:
        """
        Args:
            image: (H, W, 3) uint8 RGB, the original (de-normalised) image at the probabilities' size.
            probs: (K, H, W) per-pixel class probabilities, numpy or CPU torch; from a model's
                `sem_seg`, `wss_d2.inference.scores.to_probabilities(sem_seg, kind)`.
        Returns:
            (K, H, W) float32 refined probabilities (the CRF's marginals Q; argmax over axis 0 = labels).
        """
        probs = self.check_probs(probs)
        image = self.check_image(image, "probs", probs.shape)
        n_labels = probs.shape[0]
        unary = -np.log(np.clip(probs.reshape(n_labels, -1), self.prob_eps, 1.0))
        return self._inference(image, unary)

    def refine_labels(self, image, labels, n_labels: int, gt_prob: float = 0.7) -> np.ndarray:
        """
        SIPE's "labels as unary" CRF (docs/sipe.md §7.1; pydensecrf `unary_from_labels`, zero_unsure=False):
        energy −log(gt_prob) for the given label and −log((1 − gt_prob) / (n_labels − 1)) for the
        others. Build the DenseCRF with docs/sipe.md §7.1's pairwise set (see the module docstring).

        Args:
            image: (H, W, 3) uint8 RGB at the label map's size.
            labels: (H, W) integer map with values in 0..n_labels-1.
            n_labels: number of labels (e.g. len(keys) in SIPE).
            gt_prob: confidence in the given label, in (0, 1).
        Returns:
            (H, W) argmax of the CRF marginals, in the dtype of `labels`.
        """
        if hasattr(labels, "detach"):
            labels = labels.detach().cpu().numpy()
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise ValueError(f"DenseCRF.refine_labels: labels must be (H, W), got shape {tuple(labels.shape)}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"DenseCRF.refine_labels: labels must be integers, got dtype {labels.dtype}")
        if not 0 < gt_prob < 1:
            raise ValueError(f"DenseCRF.refine_labels: gt_prob must be in (0, 1), got {gt_prob}")
        if n_labels < 1:
            raise ValueError(f"DenseCRF.refine_labels: n_labels must be >= 1, got {n_labels}")
        image = self.check_image(image, "labels", labels.shape)
        outside = (labels < 0) | (labels >= n_labels)
        if outside.any():
            bad = np.unique(labels[outside])[:10].tolist()
            raise ValueError(
                f"DenseCRF.refine_labels: label values {bad} are outside 0..{n_labels - 1} (n_labels={n_labels})"
            )
        if n_labels == 1:
            return labels.copy()
        flat = labels.reshape(-1).astype(np.int64)
        unary = np.full((n_labels, flat.size), -np.log((1.0 - gt_prob) / (n_labels - 1)), dtype=np.float32)
        unary[flat, np.arange(flat.size)] = -np.log(gt_prob)
        return self._inference(image, unary).argmax(axis=0).astype(labels.dtype)


@dataclass
class CRFJob:
    """One CRF job for `DenseCRFPool`: probabilities to refine, or (labels, n_labels) for `refine_labels`."""

    image: np.ndarray
    probs: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    n_labels: Optional[int] = None
    gt_prob: float = 0.7

    def __post_init__(self):
        if (self.probs is None) == (self.labels is None):
            raise ValueError("CRFJob: give exactly one of probs (K, H, W) or labels (H, W) with n_labels")
        if self.labels is not None and self.n_labels is None:
            raise ValueError("CRFJob: labels need n_labels")


def _as_job(job) -> CRFJob:
    if isinstance(job, CRFJob):
        return job
    if isinstance(job, (tuple, list)) and len(job) == 2:
        return CRFJob(image=job[0], probs=job[1])
    raise TypeError(f"DenseCRFPool: a job must be (image, probs) or a CRFJob, got {type(job).__name__}")


def _run_job(crf: DenseCRF, job: CRFJob, argmax: bool):
    if job.labels is not None:
        return crf.refine_labels(job.image, job.labels, job.n_labels, job.gt_prob)
    refined = crf(job.image, job.probs)
    return refined.argmax(axis=0).astype(np.uint8 if refined.shape[0] <= 256 else np.int64) if argmax else refined


# Worker-process state, set once per worker by the pool initializer (inherited under "fork").
_WORKER_STATE: dict = {}


def _init_worker(crf: DenseCRF, argmax: bool):
    _WORKER_STATE["crf"] = crf
    _WORKER_STATE["argmax"] = argmax


def _worker_run(job: CRFJob):
    return _run_job(_WORKER_STATE["crf"], job, _WORKER_STATE["argmax"])


def _describe(key) -> str:
    """A job key for error messages: its repr, or for a dataset dict its file name / id, kept short."""
    if isinstance(key, dict):
        for field in ("file_name", "image_id"):
            if field in key:
                return f"{field}={key[field]!r}"
    text = repr(key)
    return text if len(text) <= 80 else text[:77] + "..."


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class DenseCRFPool:
    """
    Run a `DenseCRF` over a process pool. Two uses:

    * `map(jobs)`: pseudo-label export. Yields results in input order while reading `jobs` lazily;
      at most `max_pending` jobs are held (inputs in flight + results not yet yielded).
    * `submit(key, image, probs)` + `results()` / `drain()`: test time. `submit` returns at once
      unless `max_pending` jobs are in flight, then waits for the oldest; `results()` yields the
      finished (key, refined) pairs without waiting, `drain()` waits for all. Both in submission
      order. Call `results()` after each `submit` so finished results do not pile up.

    `num_workers=1` runs in the calling process (no pool): for debugging and determinism. The pool
    uses the "fork" start method on Linux (workers inherit the CRF; no re-import). Use as a context
    manager or call `close()`. Not thread-safe: use one pool from one thread.
    """

    @configurable
    def __init__(self, crf: DenseCRF, *, num_workers: int = 0, max_pending: int = 0, argmax: bool = False):
        """
        Args:
            crf: the DenseCRF to run.
            num_workers: worker processes; 0 = all cores available to this process.
            max_pending: jobs in flight at most; 0 = 2 × num_workers.
            argmax: return (H, W) uint8 labels instead of (K, H, W) probabilities (saves memory and
                inter-process copies when only labels are needed, e.g. pseudo labels).
        """
        if num_workers < 0:
            raise ValueError(f"DenseCRFPool: num_workers must be >= 0 (0 = all cores), got {num_workers}")
        if max_pending < 0:
            raise ValueError(f"DenseCRFPool: max_pending must be >= 0 (0 = 2 × workers), got {max_pending}")
        self.crf = crf
        self.num_workers = num_workers or _default_workers()
        self.max_pending = max_pending or 2 * self.num_workers
        self.argmax = argmax
        self._in_flight: deque = deque()  # (key, AsyncResult), submission order
        self._done: deque = deque()  # (key, result) finished, not yet yielded
        self._closed = False
        self._pool = None
        if self.num_workers > 1:
            context = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            self._pool = context.Pool(self.num_workers, initializer=_init_worker, initargs=(crf, argmax))
        logger.info(f"DenseCRFPool: {self.num_workers} worker(s), max_pending {self.max_pending}, {crf}")

    @classmethod
    def from_config(cls, cfg, node: str = CONFIG_NODE):
        crf_cfg = _config_node(cfg, node)
        return {
            "crf": DenseCRF(cfg, node=node),
            "num_workers": crf_cfg.NUM_WORKERS,
            "max_pending": crf_cfg.MAX_PENDING,
        }

    # -------------------------------------------------------------- state
    @property
    def in_process(self) -> bool:
        return self._pool is None

    @property
    def num_in_flight(self) -> int:
        """Jobs submitted whose result has not been collected from the workers (≤ max_pending)."""
        return len(self._in_flight)

    @property
    def num_pending(self) -> int:
        """Jobs submitted and not yet yielded by results() / drain() / map()."""
        return len(self._in_flight) + len(self._done)

    # -------------------------------------------------------------- async
    def submit(self, key: Any, image, probs) -> None:
        """Queue the CRF of (image, probs) under `key`; waits only while `max_pending` jobs are in flight."""
        self._submit(key, CRFJob(image=image, probs=probs))

    def submit_job(self, key: Any, job) -> None:
        """As `submit`, for an (image, probs) pair or a `CRFJob` (e.g. labels for refine_labels)."""
        self._submit(key, _as_job(job))

    def _submit(self, key, job: CRFJob) -> None:
        if self._closed:
            raise RuntimeError("DenseCRFPool is closed")
        # torch tensors travel as numpy arrays (a pickled CPU tensor would go through shared-memory files)
        for field in ("image", "probs", "labels"):
            value = getattr(job, field)
            if hasattr(value, "detach"):
                setattr(job, field, value.detach().cpu().numpy())
        # shapes and dtype are checked here, so that a wrong job fails at once; values (NaN,
        # normalisation) are checked in the worker and reported when the result is collected
        what, array = ("probs", job.probs) if job.labels is None else ("labels", job.labels)
        expected_ndim = 3 if job.labels is None else 2
        if np.ndim(array) != expected_ndim:
            raise ValueError(
                f"CRF job {_describe(key)}: {what} must have {expected_ndim} dims, got shape {tuple(np.shape(array))}"
            )
        self._call(key, lambda: DenseCRF.check_image(job.image, what, tuple(np.shape(array))))
        if self._pool is None:
            self._done.append((key, self._call(key, lambda: _run_job(self.crf, job, self.argmax))))
            return
        while len(self._in_flight) >= self.max_pending:
            self._collect_oldest()
        self._in_flight.append((key, self._pool.apply_async(_worker_run, (job,))))

    @staticmethod
    def _call(key, fn):
        """fn(), with the job's key added to the message of an input error (raised in a worker too)."""
        try:
            return fn()
        except (ValueError, TypeError) as error:
            raise type(error)(f"CRF job {_describe(key)}: {error}") from error

    def _collect_oldest(self) -> None:
        key, async_result = self._in_flight.popleft()
        self._done.append((key, self._call(key, async_result.get)))

    def results(self) -> Iterator[Tuple[Any, np.ndarray]]:
        """Yield the finished (key, refined) pairs, in submission order, without waiting."""
        while self._in_flight and self._in_flight[0][1].ready():
            self._collect_oldest()
        while self._done:
            yield self._done.popleft()

    def drain(self) -> Iterator[Tuple[Any, np.ndarray]]:
        """Yield every submitted job's (key, refined), in submission order, waiting as needed."""
        while self._in_flight or self._done:
            if not self._done:
                self._collect_oldest()
            yield self._done.popleft()

    # -------------------------------------------------------------- map
    def map(self, jobs: Iterable) -> Iterator[np.ndarray]:
        """
        Refine each job ((image, probs) or `CRFJob`), reading `jobs` lazily; yields results in
        input order. At most `max_pending` jobs are held at a time (unlike `Pool.imap`, whose
        result queue grows without bound when the consumer is slower than the workers).
        """
        if self.num_pending:
            raise RuntimeError(f"DenseCRFPool.map: {self.num_pending} submitted job(s) not collected; drain() first")
        finished = False
        try:
            for index, job in enumerate(jobs):
                self._submit(index, _as_job(job))
                for _, result in self.results():
                    yield result
            for _, result in self.drain():
                yield result
            finished = True
        finally:
            if not finished:  # the consumer stopped early or a job failed: drop what is left
                self._discard_pending()

    def _discard_pending(self) -> None:
        for _, async_result in self._in_flight:
            async_result.wait()
        self._in_flight.clear()
        self._done.clear()

    # -------------------------------------------------------------- shutdown
    def close(self) -> None:
        """Stop the workers after the jobs in flight; results not yet collected are dropped."""
        self._shutdown(self._pool.close if self._pool is not None else None)

    def terminate(self) -> None:
        """Stop the workers now, dropping the jobs in flight (leaving the `with` block on an exception)."""
        self._shutdown(self._pool.terminate if self._pool is not None else None)

    def _shutdown(self, stop) -> None:
        if stop is not None:
            stop()
            self._pool.join()
            self._pool = None
        self._closed = True
        self._in_flight.clear()
        self._done.clear()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.terminate()
