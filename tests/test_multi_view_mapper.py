"""MCC's multi-view inputs of the weak-label mapper (docs/mcc.md §2, §15 Q1/Q3)."""
import random

import numpy as np
import pytest
import torch
from PIL import Image

from wss_d2 import get_wss_cfg
from wss_d2.data import WeakLabelDatasetMapper

from .conftest import MAIN_CONFIG


def _cfg(**overrides):
    opts = ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "21", "INPUT.FORMAT", "RGB", "INPUT.CROP.ENABLED", "True",
            "INPUT.CROP.SIZE", "[64, 64]", "INPUT.CROP.PAD", "True", "INPUT.CROP.PAD_POSITION", "random",
            "INPUT.RANDOM_SCALE", "[1.0, 1.0]", "INPUT.MULTI_VIEW.ENABLED", "True"]
    for key, value in overrides.items():
        opts += [key, str(value)]
    return get_wss_cfg(MAIN_CONFIG, opts)


def _still(**extra):
    base = {f"INPUT.MULTI_VIEW.{k}": 0.0 for k in (
        "FLIP_PROB", "COLOR_JITTER_PROB", "GRAYSCALE_PROB", "MAIN_BLUR_PROB", "LOCAL_BLUR_PROB",
        "GLOBAL_BLUR_PROB", "GLOBAL_SOLARIZE_PROB")}
    base["INPUT.RANDOM_FLIP"] = "none"
    base.update(extra)
    return base


@pytest.fixture
def record(tmp_path):
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (40, 30, 3)).astype(np.uint8)  # 40 rows, 30 columns
    path = str(tmp_path / "im.png")
    Image.fromarray(image).save(path)
    return {"file_name": path, "image_id": "im", "image_labels": [3]}, image


def _map(cfg, rec, seed):
    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
    return WeakLabelDatasetMapper(cfg, True, dataset_names=[])(rec)


def test_keys_shapes_box_and_flip_box(record):
    rec, _ = record
    seen = set()
    for flip_box in (False, True):
        cfg = _cfg(**{"INPUT.MULTI_VIEW.FLIP_BOX": flip_box})
        for seed in range(6):
            out = _map(cfg, rec, seed)
            for key in ("image", "local_view", "global_view2"):
                assert out[key].shape == (3, 64, 64) and out[key].dtype == torch.uint8
            assert out["img_box"].dtype == torch.int64 and out["img_box"].shape == (4,)
            h0, h1, w0, w1 = out["img_box"].tolist()
            assert (h1 - h0, w1 - w0) == (40, 30)
            valid = out["valid_mask"].numpy()  # flipped with the main view
            if out["main_flipped"]:
                valid = valid[:, ::-1]
            rows, cols = np.nonzero(valid)
            box = [rows.min(), rows.max() + 1, cols.min(), cols.max() + 1]
            if flip_box and out["main_flipped"]:
                box = [box[0], box[1], 64 - box[3], 64 - box[2]]
            assert [h0, h1, w0, w1] == box
            assert out["image_labels"][3] == 1
            seen.add(out["main_flipped"])
    assert seen == {True, False}


def test_no_photometry_gives_the_crop_and_a_bicubic_resized_crop(record):
    rec, image = record
    cfg = _cfg(**_still())
    out = _map(cfg, rec, 1)
    crop = out["image"].numpy()
    assert torch.equal(out["image"], out["local_view"])
    h0, h1, w0, w1 = out["img_box"].tolist()
    np.testing.assert_array_equal(crop[:, h0:h1, w0:w1].transpose(1, 2, 0), image)
    assert crop.sum() == image.astype(np.int64).sum()  # black padding
    # global view 2: RandomResizedCrop's first torch draws after the (flip-free) main/local views
    from torchvision.transforms import RandomResizedCrop, InterpolationMode
    from torchvision.transforms import functional as TF
    pil = Image.fromarray(image)
    # replay: the mapper drew flip coins (3 torch.rand), jitter tests (2) and grayscale (2) first
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    np.random.randint(64 - 40 + 1), np.random.randint(64 - 30 + 1)
    torch.rand(1), torch.rand(1), torch.rand(1), torch.rand(1), torch.rand(1), torch.rand(1)
    i, j, h, w = RandomResizedCrop.get_params(pil, (0.4, 1.0), (0.75, 1.3333333))
    expected = np.asarray(TF.resized_crop(pil, i, j, h, w, [64, 64], InterpolationMode.BICUBIC))
    np.testing.assert_array_equal(out["global_view2"].numpy().transpose(1, 2, 0), expected)


def test_blur_changes_and_solarize_inverts(record):
    rec, _ = record
    still = _map(_cfg(**_still()), rec, 2)
    blurred = _map(_cfg(**_still(**{"INPUT.MULTI_VIEW.MAIN_BLUR_PROB": 1.0})), rec, 2)
    assert not torch.equal(still["image"], blurred["image"]) and torch.equal(still["local_view"], blurred["local_view"])
    solar = _map(_cfg(**_still(**{"INPUT.MULTI_VIEW.GLOBAL_SOLARIZE_PROB": 1.0})), rec, 2)
    g = still["global_view2"].numpy().astype(np.int64)
    np.testing.assert_array_equal(solar["global_view2"].numpy(), np.where(g >= 128, 255 - g, g))


def test_shared_local_flip(record):
    rec, _ = record
    cfg = _cfg(**{"INPUT.MULTI_VIEW.SHARE_LOCAL_FLIP": True})
    flags = [(o["main_flipped"], o["local_flipped"]) for o in (_map(cfg, rec, s) for s in range(8))]
    assert all(a == b for a, b in flags) and len({a for a, _ in flags}) == 2


def test_disabled_is_unchanged(record):
    rec, _ = record
    cfg = _cfg(**{"INPUT.MULTI_VIEW.ENABLED": False})
    bare = cfg.clone()
    bare.defrost()
    del bare.INPUT["MULTI_VIEW"]
    a, b = _map(cfg, rec, 3), _map(bare, rec, 3)
    assert set(a) == set(b) and "local_view" not in a
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key


def test_invalid_probability_names_the_key():
    with pytest.raises(ValueError, match="INPUT.MULTI_VIEW.GRAYSCALE_PROB"):
        WeakLabelDatasetMapper(_cfg(**{"INPUT.MULTI_VIEW.GRAYSCALE_PROB": 1.5}), True, dataset_names=[])
