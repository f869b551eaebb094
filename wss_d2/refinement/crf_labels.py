"""
Label maps from per-image scores, refined by dense CRF on a `DenseCRFPool` (the CRF of one
image runs while the model predicts the next): CRF-then-argmax labels of probabilities, and
SIPE's two-CRF confident-region labels of CAMs with a background channel (docs/sipe.md §7.1).

Both are generators over the images (bounded memory: the pool holds at most `max_pending`
jobs) that yield (key, uint8 label map) in input order.
"""
from ..inference.crf import DenseCRF, DenseCRFPool
from .confident_regions import combine_confident_regions, ir_label_jobs
from .probabilities import argmax_with_threshold

__all__ = ["argmax_labels", "confident_region_labels", "confident_region_pool"]


def argmax_labels(items, threshold, ignore_label, pool=None):
    """
    (key, label map) per item of `items`, (key, uint8 RGB image, (K, H, W) probabilities)
    tuples: the argmax of the probabilities, after dense CRF on `pool` when one is given (the
    image is only read then, so it may be None without a pool); pixels whose top
    probability is below `threshold` get `ignore_label`.
    """
    if pool is None:
        for key, _, probs in items:
            yield key, argmax_with_threshold(probs, threshold, ignore_label)
        return
    for key, image, probs in items:
        pool.submit(key, image, probs)
        for done, refined in pool.results():
            yield done, argmax_with_threshold(refined, threshold, ignore_label)
    for done, refined in pool.drain():
        yield done, argmax_with_threshold(refined, threshold, ignore_label)


def confident_region_labels(items, pool, *, ignore_label=255, keep_uncertain=True, background_class=0,
                            bg_scale=0.5, gt_prob=0.7):
    """
    (key, {background, class, ignore_label} label map) per item of `items`, (key, uint8 RGB
    image, (C, H, W) maps, (C,) cam_labels with the background first) tuples: the two label
    CRFs of `ir_label_jobs` on `pool` (a pool of the "labels as unary" CRF, e.g.
    `confident_region_pool`), combined by `combine_confident_regions`.
    """
    labels_of, halves = {}, {}

    def collect(results):
        for (key, half), refined in results:
            halves.setdefault(key, {})[half] = refined
            if len(halves[key]) == 2:
                done = halves.pop(key)
                yield key, combine_confident_regions(
                    done["fg"], done["bg"], labels_of.pop(key), ignore_label=ignore_label,
                    keep_uncertain=keep_uncertain, background_class=background_class)

    for key, image, cams, cam_labels in items:
        fg, bg = ir_label_jobs(image, cams, cam_labels, background_class=background_class, bg_scale=bg_scale,
                               gt_prob=gt_prob)
        labels_of[key] = cam_labels
        pool.submit_job((key, "fg"), fg)
        pool.submit_job((key, "bg"), bg)
        yield from collect(pool.results())
    yield from collect(pool.drain())


def confident_region_pool(cfg, node="TEST.IR_LABELS"):
    """The pool of the confident-region CRF: the parameters of `node`, workers and queue of TEST.CRF."""
    return DenseCRFPool(DenseCRF(cfg, node=node), num_workers=cfg.TEST.CRF.NUM_WORKERS,
                        max_pending=cfg.TEST.CRF.MAX_PENDING)
