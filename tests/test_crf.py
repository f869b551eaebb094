"""DenseCRF and DenseCRFPool (wss_d2.inference.crf): sharpening, label CRF, pool parity/bounds, errors."""
import multiprocessing as mp
import subprocess
import sys
import time

import numpy as np
import pytest
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from wss_d2 import get_wss_cfg
from wss_d2.inference import CRFJob, DenseCRF, DenseCRFPool

from .conftest import REPO

H, W, EDGE = 48, 64, 32  # non-square, so a transposed (H, W) would show
LEFT_RGB, RIGHT_RGB = (200, 60, 40), (40, 80, 210)
SIPE_IR_CRF = dict(iterations=10, pos_w=3, pos_xy_std=3, bi_w=10, bi_xy_std=50, bi_rgb_std=5)  # docs/sipe.md §7.1


def two_colour_image():
    image = np.empty((H, W, 3), np.uint8)
    image[:, :EDGE] = LEFT_RGB
    image[:, EDGE:] = RIGHT_RGB
    return image


def iou(pred, true):
    return (pred & true).sum() / (pred | true).sum()


def confident_probs(labels, n_classes, p=0.96):
    """One-hot of `labels` smoothed to `p` on the label, the rest spread evenly."""
    probs = np.full((n_classes, *labels.shape), (1 - p) / (n_classes - 1), np.float32)
    np.put_along_axis(probs, labels[None], p, axis=0)
    return probs


def structured_case(seed, n_classes=3, size=(40, 56)):
    """Image of coloured rectangles and blurred, noisy probabilities roughly aligned with them."""
    rng = np.random.default_rng(seed)
    height, width = size
    labels = np.zeros(size, np.int64)
    colours = rng.integers(0, 256, (n_classes, 3))
    for k in range(1, n_classes):
        y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
        labels[y0 : y0 + height // 2, x0 : x0 + width // 2] = k
    image = (colours[labels] + rng.integers(-8, 9, (*size, 3))).clip(0, 255).astype(np.uint8)
    shifted_one_hot = np.eye(n_classes)[np.roll(labels, 3, axis=1)].transpose(2, 0, 1)
    logits = 3 * shifted_one_hot + rng.normal(0, 1.5, (n_classes, *size))
    probs = np.exp(logits - logits.max(0))
    return image, (probs / probs.sum(0)).astype(np.float32)


# ------------------------------------------------------------------------------ DenseCRF
def test_sharpens_blurred_map_along_colour_edge():
    """A 15-px sigmoid ramp centred 6.5 px right of the colour edge: argmax IoU 25/32 → > 0.95."""
    image = two_colour_image()
    x = np.arange(W)
    ramp = 1 / (1 + np.exp(-(x - (EDGE + 6.5)) / (15 / (2 * np.log(9)))))  # 10 %..90 % over 15 px
    fg = np.broadcast_to(ramp, (H, W))
    probs = np.stack([1 - fg, fg]).astype(np.float32)
    true = np.broadcast_to(x >= EDGE, (H, W))

    before = iou(probs.argmax(0) == 1, true)
    assert before == pytest.approx(25 / 32)  # columns 39..63 predicted, 32..63 true

    refined = DenseCRF()(image, probs)
    assert refined.shape == (2, H, W) and refined.dtype == np.float32
    np.testing.assert_allclose(refined.sum(0), 1, atol=1e-5)
    after = iou(refined.argmax(0) == 1, true)
    assert after > 0.95 and after > before


def test_uniform_image_keeps_confident_argmax():
    """No colour edges: a confident quadrant map (3 classes, non-square) keeps its argmax."""
    labels = np.zeros((H, W), np.int64)
    labels[: H // 2, W // 3 :] = 1
    labels[H // 2 :, : 2 * W // 3] = 2
    image = np.full((H, W, 3), 128, np.uint8)
    refined = DenseCRF()(image, confident_probs(labels, 3))
    np.testing.assert_array_equal(refined.argmax(0), labels)


def test_accepts_float64_and_torch_inputs():
    torch = pytest.importorskip("torch")
    image, probs = structured_case(0)
    crf = DenseCRF(iterations=3)
    expected = crf(image, probs)
    np.testing.assert_array_equal(crf(torch.from_numpy(image), torch.from_numpy(probs)), expected)
    assert crf(image, probs.astype(np.float64)).dtype == np.float32


def test_refine_labels_keeps_clean_map_and_removes_salt_noise():
    """SIPE's label CRF (docs/sipe.md §7.1): a map aligned with the colour regions is kept; flipped pixels inside a region go."""
    image = two_colour_image()
    image[H // 2 :, EDGE:] = (30, 190, 60)
    clean = np.zeros((H, W), np.uint8)
    clean[:, EDGE:] = 1
    clean[H // 2 :, EDGE:] = 2
    crf = DenseCRF(**SIPE_IR_CRF)
    np.testing.assert_array_equal(crf.refine_labels(image, clean, n_labels=3, gt_prob=0.7), clean)

    noisy = clean.copy()
    salt = [(5, 5, 2), (10, 20, 1), (30, 8, 2), (40, 25, 1), (8, 50, 2), (20, 45, 0), (35, 55, 1), (44, 40, 0)]
    for y, x, value in salt:
        assert noisy[y, x] != value
        noisy[y, x] = value
    refined = crf.refine_labels(image, noisy, n_labels=3)
    assert (noisy != clean).sum() == len(salt)
    np.testing.assert_array_equal(refined, clean)
    assert refined.dtype == np.uint8
    image.setflags(write=False)  # as np.asarray(PIL image) gives; pydensecrf needs a writable buffer
    np.testing.assert_array_equal(crf.refine_labels(image, noisy, n_labels=3), clean)


def test_from_config_defaults_and_overrides():
    crf = DenseCRF(get_wss_cfg())  # TEST.CRF's defaults: DeepLab test CRF (docs/sipe.md §8.1)
    assert (crf.iterations, crf.pos_w, crf.pos_xy_std, crf.bi_w, crf.bi_xy_std, crf.bi_rgb_std) == (10, 3, 1, 4, 67, 3)

    cfg = get_cfg()
    cfg.TEST.CRF = CN({"ITERATIONS": 10, "POS_W": 1, "POS_XY_STD": 1, "BI_W": 4, "BI_XY_STD": 121, "BI_RGB_STD": 5,
                       "NUM_WORKERS": 1, "MAX_PENDING": 3})  # MCC's final-evaluation CRF parameters
    crf = DenseCRF(cfg)
    assert (crf.iterations, crf.pos_w, crf.pos_xy_std, crf.bi_w, crf.bi_xy_std, crf.bi_rgb_std) == (10, 1, 1, 4, 121, 5)
    sipe_ir = {"ITERATIONS": 10, "POS_W": 3, "POS_XY_STD": 3, "BI_W": 10, "BI_XY_STD": 50, "BI_RGB_STD": 5}
    cfg.SIPE = CN({"IR_CRF": CN(sipe_ir)})
    assert DenseCRF(cfg, node="SIPE.IR_CRF").bi_xy_std == 50
    with DenseCRFPool(cfg) as pool:
        assert pool.in_process and pool.num_workers == 1 and pool.max_pending == 3
        assert pool.crf.bi_xy_std == 121


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "image_shape, probs_shape, dtype, fill, error, message",
    [
        ((48, 64, 3), (2, 40, 64), np.uint8, None, ValueError,
         "image of shape (48, 64, 3) and probs of shape (2, 40, 64)"),
        ((48, 64, 3), (48, 64), np.uint8, None, ValueError, "probs must be (K, H, W)"),
        ((48, 64), (2, 48, 64), np.uint8, None, ValueError, "image must be (H, W, 3) RGB, got shape (48, 64)"),
        ((48, 64, 3), (2, 48, 64), np.float32, None, TypeError, "image must be uint8 RGB (H, W, 3), got dtype float32"),
        ((48, 64, 3), (2, 48, 64), np.uint8, "nan", ValueError, "contain 1 NaN"),
        ((48, 64, 3), (2, 48, 64), np.uint8, "sum", ValueError,
         "not a distribution over the 2 classes (axis 0) at every pixel: sum is 1.2 at (y, x) = (3, 4)"),
        ((48, 64, 3), (2, 48, 64), np.uint8, "logits", ValueError, "must lie in [0, 1], got values in [-2, 3]"),
    ],
)
def test_bad_input_errors_name_the_problem(image_shape, probs_shape, dtype, fill, error, message):
    image = np.zeros(image_shape, dtype)
    probs = np.full(probs_shape, 1 / probs_shape[0] if len(probs_shape) == 3 else 0.5, np.float32)
    if fill == "nan":
        probs[0, 1, 2] = np.nan
    elif fill == "sum":
        probs[0, 3, 4] = 0.7
    elif fill == "logits":
        probs[0, 0, 0], probs[1, 0, 0] = -2, 3
    with pytest.raises(error) as info:
        DenseCRF()(image, probs)
    assert message in str(info.value)


def test_refine_labels_errors():
    image = two_colour_image()
    labels = np.zeros((H, W), np.int64)
    labels[0, 0], labels[5, 9] = 7, 3
    with pytest.raises(ValueError, match=r"label values \[3, 7\] are outside 0..2"):
        DenseCRF().refine_labels(image, labels, n_labels=3)
    with pytest.raises(ValueError, match=r"image of shape \(48, 64, 3\) and labels of shape \(64, 48\)"):
        DenseCRF().refine_labels(image, np.zeros((W, H), np.int64), n_labels=3)
    with pytest.raises(TypeError, match="labels must be integers"):
        DenseCRF().refine_labels(image, np.zeros((H, W), np.float32), n_labels=3)


# ------------------------------------------------------------------------------ DenseCRFPool
def test_pool_equals_in_process_in_order():
    cases = [structured_case(seed) for seed in range(5)]
    crf = DenseCRF(iterations=5)
    expected = [crf(image, probs) for image, probs in cases]
    labels_job = CRFJob(image=cases[0][0], labels=expected[0].argmax(0), n_labels=3)
    expected_labels = crf.refine_labels(labels_job.image, labels_job.labels, 3)

    for workers in (1, 2):
        with DenseCRFPool(crf, num_workers=workers) as pool:
            assert pool.in_process == (workers == 1)
            results = list(pool.map(iter(cases)))
            for got, want in zip(results, expected):
                np.testing.assert_array_equal(got, want)
            assert len(results) == len(cases)

            for index, (image, probs) in enumerate(cases):
                pool.submit(f"img{index}", image, probs)
            pool.submit_job("labels", labels_job)
            drained = list(pool.drain())
            assert [key for key, _ in drained] == [f"img{i}" for i in range(5)] + ["labels"]
            for (_, got), want in zip(drained, expected):
                np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(drained[-1][1], expected_labels)
            assert pool.num_pending == 0

    with DenseCRFPool(crf, num_workers=2, argmax=True) as pool:
        labels = list(pool.map(cases))
    assert all(got.dtype == np.uint8 for got in labels)
    np.testing.assert_array_equal(np.stack(labels), np.stack([want.argmax(0) for want in expected]))


def test_map_reads_jobs_lazily_with_bounded_memory():
    cases = [structured_case(seed) for seed in range(8)]
    crf = DenseCRF(iterations=2)
    for workers, max_pending in ((1, 0), (2, 2)):
        produced = []

        def jobs():
            for case in cases:
                produced.append(1)
                yield case

        with DenseCRFPool(crf, num_workers=workers, max_pending=max_pending) as pool:
            for consumed, _ in enumerate(pool.map(jobs()), start=1):
                assert len(produced) - consumed <= (0 if workers == 1 else max_pending)  # held by the pool
                assert pool.num_pending <= pool.max_pending
        assert consumed == len(cases)


class SlowCRF(DenseCRF):
    """Takes `delay` s per image and counts finished jobs in shared memory (inherited by forked workers)."""

    def __init__(self, finished, delay):
        super().__init__(iterations=1)
        self.finished, self.delay = finished, delay

    def __call__(self, image, probs):
        time.sleep(self.delay)
        refined = super().__call__(image, probs)
        with self.finished.get_lock():
            self.finished.value += 1
        return refined


def test_submit_blocks_at_max_pending_and_results_do_not_wait():
    finished = mp.get_context("fork").Value("i", 0)
    image, probs = structured_case(0)
    with DenseCRFPool(SlowCRF(finished, delay=0.15), num_workers=2, max_pending=2) as pool:
        pool.submit("first", image, probs)
        start = time.perf_counter()
        assert list(pool.results()) == []  # nothing finished yet, and results() returned at once
        assert time.perf_counter() - start < 0.05
        keys = []
        for submitted in range(2, 7):
            pool.submit(submitted, image, probs)
            assert submitted - finished.value <= 2  # jobs not yet finished by a worker
            assert pool.num_in_flight <= 2
            keys += [key for key, _ in pool.results()]
        keys += [key for key, _ in pool.drain()]
    assert keys == ["first", 2, 3, 4, 5, 6]
    assert finished.value == 6


def test_pool_errors_name_the_job():
    image, probs = structured_case(0)
    bad = probs.copy()
    bad[0, 0, 0] = np.nan
    with DenseCRFPool(DenseCRF(iterations=1), num_workers=2) as pool:
        shapes = r"CRF job 'b': DenseCRF: image of shape \(40, 56, 3\) and probs of shape \(3, 20, 56\)"
        with pytest.raises(ValueError, match=shapes):
            pool.submit("b", image, probs[:, :20])  # shapes: at submit
        pool.submit("a", image, probs)
        pool.submit("nan", image, bad)
        with pytest.raises(ValueError, match="CRF job 'nan': DenseCRF: probs of shape .* contain 1 NaN"):
            list(pool.drain())  # values: when the result is collected
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit("late", image, probs)


def test_logits_error_points_at_the_score_conversion():
    probs = np.full((2, 4, 4), 0.5, np.float32)
    probs[0, 0, 0], probs[1, 0, 0] = -2, 3
    with pytest.raises(ValueError, match=r"to_probabilities\(scores, kind\)"):
        DenseCRF()(np.zeros((4, 4, 3), np.uint8), probs)


# ------------------------------------------------------------------------------ import
def test_import_wss_d2_needs_no_pydensecrf():
    # a fresh interpreter: this one has imported pydensecrf in the tests above
    code = ("import sys; import wss_d2, wss_d2.engine, wss_d2.evaluation, wss_d2.inference; "
            "print('pydensecrf' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
