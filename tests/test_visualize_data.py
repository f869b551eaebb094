"""tools/visualize_data.py draws every weak-label kind to PNG."""
import os

import numpy as np
import pytest
from PIL import Image

from .conftest import MAIN_CONFIG, load_script, tiny_subset


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


def test_side_by_side_panels_with_pseudo_labels_and_a_prediction(tmp_path, synthetic_dir, restore_loggers):
    """image | weak | gt | pseudo | prediction in one PNG per image, each panel captioned; the pseudo set
    registered by the config (as an export's second_stage.yaml does); dark (background) scribbles shown."""
    import shutil

    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_model

    from wss_d2 import get_wss_cfg

    source = tiny_subset("wss_synthetic_train", 2, "wss_synthetic_train_vis_tiny")
    pseudo = tmp_path / "pseudo"
    pseudo.mkdir()
    for record in DatasetCatalog.get(source):  # stand-in pseudo labels: the masks themselves
        shutil.copy(record["sem_seg_file_name"], pseudo / f"{record['image_id']}.png")
    torch.manual_seed(0)
    weights = tmp_path / "model.pth"
    torch.save({"model": build_model(get_wss_cfg(MAIN_CONFIG, ["MODEL.WEIGHTS", ""])).state_dict()}, weights)
    config = tmp_path / "second_stage.yaml"
    config.write_text(f'_BASE_: "{MAIN_CONFIG}"\nDATASETS:\n  PSEUDO_LABELS: [["vis_pseudo", "{source}", "{pseudo}"]]\n')

    written = _tool().main(["--dataset", "wss_synthetic_train_scribbles", "--gt-dataset", "wss_synthetic_train",
                            "--pseudo-dataset", "vis_pseudo", "--panels", "image", "weak", "gt", "pseudo", "prediction",
                            "--config-file", str(config), "--output", str(tmp_path / "vis"), "--num", "2",
                            "MODEL.WEIGHTS", str(weights)])
    assert len(written) == 2
    drawn = np.asarray(Image.open(written[0]).convert("RGB"))
    plain = np.asarray(Image.open(os.path.join(synthetic_dir, "JPEGImages", "syn_000000.jpg")).convert("RGB"))
    h, w = 2 * plain.shape[0], 2 * plain.shape[1]
    assert drawn.shape[0] == h + 14 and drawn.shape[1] == 5 * (w + 4)  # five captioned panels
    assert (drawn[:14] == 255).mean() > 0.8  # the caption strips
    # the weak panel shows the scribbles: background ones in white (black would vanish on dark images)
    from wss_d2.data import read_label_map

    scribble = read_label_map(os.path.join(synthetic_dir, "scribble", "seginst", "syn_000000.png"))
    weak = drawn[14:, w + 4: 2 * w + 4]
    ys, xs = np.nonzero(scribble == 0)
    white = (weak[2 * ys, 2 * xs] > 200).all(axis=1)
    assert len(ys) and white.mean() > 0.8  # (the tags caption covers a few)
    with pytest.raises(SystemExit, match="--pseudo-dataset"):
        _tool().main(["--dataset", "wss_synthetic_train_scribbles", "--panels", "pseudo", "--output", str(tmp_path)])
