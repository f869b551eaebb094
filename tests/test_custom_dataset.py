"""docs/custom_dataset.md, followed on a generated folder: the config registers the folder, weak labels
are simulated for it, training and evaluation run on them, the demo predicts, the visualiser draws."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from .conftest import CONFIGS, REPO, load_script

pytestmark = pytest.mark.slow

CLASSES = ["background", "cat", "dog"]


def _pets(root, n_train=6, n_val=3):
    rng = np.random.RandomState(0)
    os.makedirs(os.path.join(root, "JPEGImages"))
    os.makedirs(os.path.join(root, "SegmentationClass"))
    os.makedirs(os.path.join(root, "ImageSets", "Segmentation"))
    ids = {"train": [f"pet{i:03d}" for i in range(n_train)], "val": [f"pet{i:03d}" for i in range(n_train, n_train + n_val)]}
    for image_id in ids["train"] + ids["val"]:
        h, w = rng.randint(80, 120, 2)
        label = np.zeros((h, w), np.uint8)
        image = rng.randint(0, 60, (h, w, 3)).astype(np.uint8)
        for cls in (1, 2):
            y, x = rng.randint(0, h - 30), rng.randint(0, w - 30)
            label[y:y + 25, x:x + 25] = cls
            image[y:y + 25, x:x + 25] = (200, 120, 40) if cls == 1 else (40, 120, 200)
        label[0, :] = 255  # an ignored row
        Image.fromarray(image).save(os.path.join(root, "JPEGImages", image_id + ".jpg"), quality=95)
        Image.fromarray(label).save(os.path.join(root, "SegmentationClass", image_id + ".png"))
    for split, names in ids.items():
        with open(os.path.join(root, "ImageSets", "Segmentation", split + ".txt"), "w") as f:
            f.write("\n".join(names) + "\n")
    return ids


def test_the_guide_on_a_generated_folder(tmp_path, restore_loggers):
    root = str(tmp_path / "pets")
    ids = _pets(root)
    config = tmp_path / "my_pets.yaml"
    config.write_text(
        f'_BASE_: "{os.path.join(CONFIGS, "synthetic", "pce_R18_scribbles.yaml")}"\n'
        "DATASETS:\n"
        "  FOLDER:\n"
        f'    ROOT: "{root}"\n'
        '    PREFIX: "pets"\n'
        f"    CLASSES: {CLASSES}\n"
        "    COLORS: [[0, 0, 0], [255, 128, 0], [0, 128, 255]]\n"
        '  TRAIN: ("pets_train_sem_seg",)\n'
        '  TEST: ("pets_val_sem_seg",)\n'
        "MODEL:\n  SEM_SEG_HEAD:\n    NUM_CLASSES: 3\n"
    )
    # 3. simulated weak labels, in the real formats
    run = [sys.executable, "datasets/make_weak_labels.py", "--config-file", str(config), "--dataset",
           "pets_train_sem_seg", "--output", root, "--kinds", "tags", "scribbles"]
    proc = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scribble = np.asarray(Image.open(os.path.join(root, "scribble", "seginst", ids["train"][0] + ".png")))
    assert set(np.unique(scribble)) <= {0, 1, 2, 3, 255} and (scribble < 3).any()  # 3 = K = unlabelled
    tags = np.load(os.path.join(root, "cls_labels.npy"), allow_pickle=True).item()
    assert tags[ids["train"][0]].tolist() == [1.0, 1.0]

    # 4. training on the scribbles (AGMM's partial-CE baseline), evaluated on the val masks
    out = str(tmp_path / "run")
    run = [sys.executable, "train_net.py", "--config-file", str(config), "DATASETS.TRAIN", "('pets_train_scribbles',)",
           "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
           "INPUT.SPARSE.CHECK_FILES", "3", "OUTPUT_DIR", out]
    proc = subprocess.run(run, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "IoU-dog" in open(os.path.join(out, "results.json")).read()  # the config's class names

    # the demo and the visualiser on the registered sets, with the class names and colours of the config
    pred = tmp_path / "pred"
    load_script("demo/predict.py").main(["--config-file", str(config), "--input", os.path.join(root, "JPEGImages"),
                                         "--output", str(pred), "MODEL.WEIGHTS", os.path.join(out, "model_final.pth")])
    label = Image.open(pred / (ids["val"][0] + ".png"))
    assert label.mode == "P" and label.getpalette()[3:6] == [255, 128, 0]
    drawn = load_script("tools/visualize_data.py").main(["--dataset", "pets_train_scribbles", "--output",
                                                          str(tmp_path / "vis"), "--num", "2", "--config-file", str(config)])
    assert len(drawn) == 2
