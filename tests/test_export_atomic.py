"""tools/export_pseudo_labels.py writes its folders atomically, and the second stage it sets up
trains into its own OUTPUT_DIR."""
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

from wss_d2 import get_wss_cfg
from wss_d2.data.datasets import register_pseudo_label_dataset

from .conftest import CONFIGS, MAIN_CONFIG, REPO, load_script

pytestmark = pytest.mark.usefixtures("restore_loggers")  # the export tool reconfigures loggers

SIPE_CONFIG = os.path.join(CONFIGS, "synthetic", "sipe_R18.yaml")
FAST = ["DATALOADER.NUM_WORKERS", "0", "TEST.SIPE.SCALES", "[1.0]"]


def _register(name, records, source="wss_synthetic_train_tags"):
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: [dict(r) for r in records])
        meta = MetadataCatalog.get(source).as_dict()
        meta.pop("name")
        MetadataCatalog.get(name).set(**meta)
    return name


def _splits(tmp_path):
    """Three tagged images, and the same ids with the last image file corrupt."""
    records = DatasetCatalog.get("wss_synthetic_train_tags")[:3]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg")
    bad = [dict(r) for r in records]
    bad[-1]["file_name"] = str(corrupt)
    return _register("_atomic_good", records), _register("_atomic_bad", bad)


def _sipe_weights(tmp_path, seed):
    torch.manual_seed(seed)
    model = build_model(get_wss_cfg(SIPE_CONFIG, ["MODEL.WEIGHTS", ""]))
    path = str(tmp_path / f"sipe_{seed}.pth")
    torch.save({"model": model.state_dict()}, path)
    return path


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def _leftovers(parent):
    return sorted(name for name in os.listdir(parent) if ".partial-" in name or ".previous-" in name)


def test_failed_export_leaves_no_partial_folder_and_keeps_the_previous_one(synthetic_dir, tmp_path):
    export = load_script("tools/export_pseudo_labels.py")
    good, bad = _splits(tmp_path)
    first, second = _sipe_weights(tmp_path, 0), _sipe_weights(tmp_path, 1)
    labels, cams = tmp_path / "labels", tmp_path / "cams"

    def run(dataset, weights, labels=labels, cams=cams):
        return export.main(["--config-file", SIPE_CONFIG, "--weights", weights, "--dataset", dataset,
                            "--source", "cams", "--save-cams", str(cams), "--output", str(labels), *FAST])

    assert run(good, first)["images"] == 3
    before = {"labels": _snapshot(labels), "cams": _snapshot(cams)}
    assert sum(name.endswith(".png") for name in before["labels"]) == 3 and len(before["cams"]) == 3

    # a rerun with other weights fails on the third image: both earlier folders stay as they were
    with pytest.raises(ValueError, match="Cannot decode image .*corrupt.jpg"):
        run(bad, second)
    assert {"labels": _snapshot(labels), "cams": _snapshot(cams)} == before
    assert _leftovers(tmp_path) == []

    # a first export that fails leaves no folder to register
    fresh, fresh_cams = tmp_path / "fresh", tmp_path / "fresh_cams"
    with pytest.raises(ValueError, match="Cannot decode image"):
        run(bad, second, fresh, fresh_cams)
    assert not fresh.exists() and not fresh_cams.exists() and _leftovers(tmp_path) == []
    register_pseudo_label_dataset("_atomic_fresh", "wss_synthetic_train_tags", str(fresh))
    with pytest.raises(FileNotFoundError):
        DatasetCatalog.get("_atomic_fresh")

    # a complete rerun replaces the earlier export
    run(good, second)
    assert _snapshot(cams) != before["cams"] and sorted(_snapshot(cams)) == sorted(before["cams"])
    assert _leftovers(tmp_path) == []


def test_export_refuses_to_replace_a_folder_it_did_not_write(synthetic_dir, tmp_path):
    export = load_script("tools/export_pseudo_labels.py")
    good, _ = _splits(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model_final.pth").write_bytes(b"weights")
    with pytest.raises(SystemExit, match=r"--output .*run exists and holds what an export does not write "
                                         r"\(model_final.pth\)"):
        export.main(["--config-file", SIPE_CONFIG, "--weights", _sipe_weights(tmp_path, 0), "--dataset", good,
                     "--source", "cams", "--output", str(run_dir), *FAST])
    assert (run_dir / "model_final.pth").read_bytes() == b"weights"


def test_second_stage_trains_into_its_own_output_dir(synthetic_dir, tmp_path):
    """Run the command the export prints: the first stage's checkpoint and files stay untouched."""
    export = load_script("tools/export_pseudo_labels.py")
    first_dir = tmp_path / "first"
    first_dir.mkdir()
    first_config = tmp_path / "first_stage.yaml"
    first_config.write_text(f'_BASE_: "{MAIN_CONFIG}"\nOUTPUT_DIR: "{first_dir}"\n')
    torch.manual_seed(0)
    model = build_model(get_wss_cfg(str(first_config), ["MODEL.WEIGHTS", ""]))
    torch.save({"model": model.state_dict()}, first_dir / "model_final.pth")
    (first_dir / "last_checkpoint").write_text("model_final.pth")
    before = _snapshot(first_dir)

    pseudo = tmp_path / "pseudo"
    report = export.main(["--config-file", str(first_config), "--dataset", "wss_synthetic_val", "--output", str(pseudo),
                          "--weights", str(first_dir / "model_final.pth"), "--name", "_atomic_second_stage",
                          "DATALOADER.NUM_WORKERS", "0"])
    second_dir = tmp_path / "pseudo_second_stage"
    assert report["second_stage_output"] == str(second_dir)
    command = shlex.split(report["second_stage_command"])
    assert command[:3] == ["python", "train_net.py", "--config-file"]
    proc = subprocess.run(
        [sys.executable, *command[1:], "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "DATASETS.TEST", "()",
         "DATALOADER.NUM_WORKERS", "0", "SOLVER.CHECKPOINT_PERIOD", "100"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _snapshot(first_dir) == before  # model_final.pth and last_checkpoint untouched
    assert (second_dir / "model_final.pth").exists() and "_atomic_second_stage" in (second_dir / "log.txt").read_text()

    # and a second-stage folder that is the first stage's is refused before any inference
    for target in (first_dir, pseudo / "train"):
        with pytest.raises(SystemExit, match=r"--second-stage-output .*(first stage's OUTPUT_DIR|inside --output)"):
            export.main(["--config-file", str(first_config), "--dataset", "wss_synthetic_val", "--output",
                         str(pseudo), "--second-stage-output", str(target), "DATALOADER.NUM_WORKERS", "0"])
    assert _snapshot(first_dir) == before
    assert np.any([name.endswith(".png") for name in os.listdir(pseudo)])


def test_nested_label_and_cam_folders_are_refused(synthetic_dir, tmp_path):
    export = load_script("tools/export_pseudo_labels.py")
    with pytest.raises(SystemExit, match=r"--save-cams .*labels/cams and --output .*labels are nested"):
        export.main(["--config-file", SIPE_CONFIG, "--dataset", "wss_synthetic_train_tags", "--source", "cams",
                     "--output", str(tmp_path / "labels"), "--save-cams", str(tmp_path / "labels" / "cams")])


def test_labels_and_cams_may_share_one_folder(synthetic_dir, tmp_path):
    export = load_script("tools/export_pseudo_labels.py")
    good, _ = _splits(tmp_path)
    folder = tmp_path / "both"
    for _ in range(2):  # the rerun replaces the folder it wrote
        export.main(["--config-file", SIPE_CONFIG, "--weights", _sipe_weights(tmp_path, 0), "--dataset", good,
                     "--source", "cams", "--output", str(folder), "--save-cams", str(folder), *FAST])
        names = os.listdir(folder)
        assert sum(n.endswith(".png") for n in names) == 3 and sum(n.endswith(".npy") for n in names) == 3
    assert _leftovers(tmp_path) == []


def test_a_folder_left_by_a_killed_export_is_not_registered(synthetic_dir, tmp_path):
    from wss_d2.data.datasets.pseudo_labels import register_cam_dataset

    left = tmp_path / ".labels.partial-abc123"
    left.mkdir()
    for record in DatasetCatalog.get("wss_synthetic_val"):  # even with every file present
        (left / f"{record['image_id']}.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"DATASETS.PSEUDO_LABELS: .*partial-abc123 is the temporary folder of an "
                                         r"unfinished export"):
        register_pseudo_label_dataset("_atomic_killed", "wss_synthetic_val", str(left))
    with pytest.raises(ValueError, match=r"DATASETS.CAMS: .*unfinished export"):
        register_cam_dataset("_atomic_killed_cams", "wss_synthetic_val", str(left))
