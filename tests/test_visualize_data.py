"""tools/visualize_data.py draws every weak-label kind to PNG."""
import os

import numpy as np
import pytest
from PIL import Image

from .conftest import MAIN_CONFIG, load_script


def _tool():
    return load_script("tools/visualize_data.py")


@pytest.mark.parametrize("suffix", ["", "_tags", "_boxes", "_scribbles", "_points_json", "_clicks"])
def test_draws_each_kind(tmp_path, synthetic_dir, suffix):
    name = f"wss_synthetic_train{suffix}"
    written = _tool().main(["--dataset", name, "--output", str(tmp_path), "--num", "2"])
    assert len(written) == 2
    drawn = np.asarray(Image.open(written[0]).convert("RGB"))
    plain = np.asarray(Image.open(os.path.join(synthetic_dir, "JPEGImages", "syn_000000.jpg")).convert("RGB"))
    assert drawn.shape[:2] == (2 * plain.shape[0], 2 * plain.shape[1])  # drawn at scale 2
    upscaled = np.asarray(Image.fromarray(plain).resize(drawn.shape[1::-1], Image.NEAREST)).astype(int)
    changed = (np.abs(drawn.astype(int) - upscaled).max(2) > 60).sum()
    assert changed >= 40  # something was drawn over the image (20 clicks at scale 2 = 80 px)


def test_dataloader_source_applies_the_training_augmentation(tmp_path, synthetic_dir):
    written = _tool().main(
        ["--dataset", "wss_synthetic_train_boxes", "--output", str(tmp_path), "--num", "1",
         "--source", "dataloader", "--config-file", MAIN_CONFIG]
    )
    # the training crop is 112x112 (or smaller); drawn at scale 2
    assert max(np.asarray(Image.open(written[0])).shape[:2]) <= 224
