"""tools/export_pseudo_labels.py: scores to probabilities (segmentation or CAMs), tag restriction
(wss_d2.refinement, which the tool calls), the CAM background score key, and the pseudo-label
registration its second_stage.yaml relies on."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

from wss_d2 import get_wss_cfg
from wss_d2.data import WeakLabelDatasetMapper, read_image, read_label_map
from wss_d2.data.datasets import register_pseudo_label_dataset, register_pseudo_labels_from_config
from wss_d2.inference import DenseCRF
from wss_d2.refinement import argmax_with_threshold, restrict_to_tags, scores_to_probabilities

from .conftest import CONFIGS, load_script, tiny_subset


def _tool():
    return load_script("tools/export_pseudo_labels.py")


def test_segmentation_scores_become_a_softmax():
    logits = torch.tensor([[[0.0, 2.0]], [[1.0, 0.0]]])
    probs = scores_to_probabilities({"sem_seg": logits}, "sem_seg", 2, 0.15, 0)
    expected = torch.softmax(logits, 0).numpy()
    assert np.allclose(probs, expected)


def test_cams_get_a_constant_background_and_are_normalised():
    cams = torch.tensor([[[0.9, 0.1]], [[0.3, 0.05]]])  # classes 2 and 4
    probs = scores_to_probabilities({"cams": cams, "cam_labels": torch.tensor([2, 4])}, "cams", 5, 0.15, 0)
    assert probs.shape == (5, 1, 2)
    assert np.allclose(probs.sum(0), 1)
    # pixel 0: cam 0.9 beats the 0.15 background; pixel 1: background 0.15 beats 0.1 and 0.05
    assert probs.argmax(0).tolist() == [[2, 0]]
    assert probs[0, 0, 1] == pytest.approx(0.15 / 0.30)
    with pytest.raises(KeyError, match="no 'cams'"):
        scores_to_probabilities({"sem_seg": cams}, "cams", 5, 0.15, 0)


def test_cam_background_score_is_a_config_key_not_a_flag():
    assert get_wss_cfg().TEST.EXPORT.CAM_BACKGROUND_SCORE == 0.15
    with pytest.raises(SystemExit, match=r"--bg-threshold .*TEST.EXPORT.CAM_BACKGROUND_SCORE 0.2 after the other options"):
        _tool().main(["--config-file", "x.yaml", "--dataset", "d", "--output", "o", "--source", "cams",
                      "--bg-threshold", "0.2"])


def test_restrict_to_tags_keeps_tagged_classes_and_background():
    probs = np.full((4, 1, 1), 0.25, np.float32)
    restricted = restrict_to_tags(probs, np.array([1, 0, 0, 1], np.float32))
    assert restricted[:, 0, 0].tolist() == pytest.approx([0.5, 0, 0, 0.5])


def test_pseudo_label_registration_from_config(tmp_path, synthetic_dir):
    folder = tmp_path / "pseudo"
    folder.mkdir()
    records = DatasetCatalog.get("wss_synthetic_val")
    for r in records:
        Image.fromarray(np.full((4, 4), 2, np.uint8), mode="L").save(folder / f"{r['image_id']}.png")
    cfg = get_wss_cfg(opts=["DATASETS.PSEUDO_LABELS", f"[['_pseudo_val', 'wss_synthetic_val', '{folder}']]"])
    register_pseudo_labels_from_config(cfg)
    register_pseudo_labels_from_config(cfg)  # once per process: the same entry again is fine
    dicts = DatasetCatalog.get("_pseudo_val")
    assert len(dicts) == len(records) and all("sem_seg_file_name" not in d for d in dicts)
    assert dicts[0]["pseudo_sem_seg_file_name"] == str(folder / f"{records[0]['image_id']}.png")
    meta = MetadataCatalog.get("_pseudo_val")
    assert meta.weak_label == "pseudo" and meta.stuff_classes == MetadataCatalog.get("wss_synthetic_val").stuff_classes
    with pytest.raises(ValueError, match="already registered"):
        register_pseudo_label_dataset("_pseudo_val", "wss_synthetic_val", str(tmp_path))
    os.remove(folder / f"{records[3]['image_id']}.png")
    register_pseudo_label_dataset("_pseudo_val_missing", "wss_synthetic_val", str(folder))
    with pytest.raises(FileNotFoundError, match=f"{records[3]['image_id']}.png"):
        DatasetCatalog.get("_pseudo_val_missing")
    bad = get_wss_cfg(opts=["DATASETS.PSEUDO_LABELS", "[['x', 'y']]"])
    with pytest.raises(ValueError, match=r"\[name, source dataset, folder\]"):
        register_pseudo_labels_from_config(bad)


def test_second_stage_names_the_built_in_split_not_a_derived_registration(tmp_path):
    # a second stage runs in a fresh process, where the CAM set of the export's command line
    # is not registered (a real failure of tools/run_sipe_pipeline.py)
    from wss_d2.data.datasets.pseudo_labels import register_cam_dataset, register_pseudo_label_dataset

    from .conftest import load_script

    export = load_script("tools/export_pseudo_labels.py")
    register_cam_dataset("root_test_cams", "wss_synthetic_train_tags", str(tmp_path / "cams"))
    register_pseudo_label_dataset("root_test_pseudo", "root_test_cams", str(tmp_path / "labels"))
    assert export.root_dataset("root_test_pseudo") == "wss_synthetic_train_tags"
    assert export.root_dataset("wss_synthetic_train_tags") == "wss_synthetic_train_tags"


# ------------------------------------------------------------ the model's declared score kind
AGMM_CONFIG = os.path.join(CONFIGS, "synthetic", "agmm_R18_points.yaml")
TINY_VAL = "wss_synthetic_val_export_tiny"
FAST = ["DATALOADER.NUM_WORKERS", "0", "TEST.CRF.NUM_WORKERS", "1"]


def _tiny_val(synthetic_dir):
    return tiny_subset("wss_synthetic_val", 3, TINY_VAL)


@pytest.fixture(scope="module")
def confident_agmm(tmp_path_factory):
    """A random AGMM (probabilities, MODEL.AGMM.TEST_SOFTMAX) with a classifier scaled so that
    most pixels have a top probability above 0.5, and its checkpoint."""
    cfg = get_wss_cfg(AGMM_CONFIG, ["MODEL.WEIGHTS", ""])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.sem_seg_head.predictor.weight.mul_(300)
    weights = str(tmp_path_factory.mktemp("agmm") / "model_final.pth")
    torch.save({"model": model.state_dict()}, weights)
    return model, cfg, weights


@pytest.mark.parametrize("crf", [False, True])
def test_agmm_probabilities_are_exported_as_they_are(confident_agmm, synthetic_dir, tmp_path, restore_loggers, crf):
    """
    AGMM returns probabilities: `--threshold 0.5` keeps its confident pixels (a second softmax
    would bring every top probability of 6 classes below 0.35 and mark every pixel 255), and
    the CRF's input is exactly the model's probabilities.
    """
    model, cfg, weights = confident_agmm
    dataset = _tiny_val(synthetic_dir)
    out = tmp_path / "labels"
    _tool().main(["--config-file", AGMM_CONFIG, "--weights", weights, "--dataset", dataset, "--output", str(out),
                  "--threshold", "0.5", *(["--crf"] if crf else []), *FAST])
    mapper = WeakLabelDatasetMapper(cfg, is_train=False, dataset_names=[dataset])
    for record in DatasetCatalog.get(dataset):
        with torch.no_grad():
            output = model([mapper(dict(record))])[0]
        assert output["sem_seg_kind"] == "probabilities"
        probs = output["sem_seg"].numpy()
        if crf:
            probs = DenseCRF(cfg)(read_image(record["file_name"], "RGB"), probs)
        expected = argmax_with_threshold(probs, 0.5, 255)
        label = read_label_map(str(out / f"{record['image_id']}.png"))
        assert np.array_equal(label, expected)
        assert (label != 255).mean() > 0.5  # the confident pixels are kept
    # indexed PNGs in the dataset's colours (VOC's style): the raw indices above, shown as pictures
    from PIL import Image

    colours = MetadataCatalog.get(dataset).stuff_colors
    with Image.open(out / f"{record['image_id']}.png") as png:
        assert png.mode == "P"
        palette = png.getpalette()
        shown = np.asarray(png.convert("RGB"))
    assert [tuple(palette[3 * i:3 * i + 3]) for i in range(len(colours))] == [tuple(c) for c in colours]
    assert tuple(palette[3 * 255:3 * 256]) == (224, 224, 192)
    for value in np.unique(label):
        assert (shown[label == value] == (colours[value] if value < len(colours) else (224, 224, 192))).all()
    if not crf:  # the exported set, as its second_stage.yaml registers it, drawn by the visualiser
        drawn = load_script("tools/visualize_data.py").main([
            "--config-file", str(out / "second_stage.yaml"), "--dataset", f"{dataset}_pseudo_export",
            "--output", str(tmp_path / "vis"), "--num", "2"])
        assert len(drawn) == 2 and np.asarray(Image.open(drawn[0])).ndim == 3


def test_declared_kind_picks_the_conversion():
    probs = torch.tensor([[[0.9, 0.2]], [[0.1, 0.8]]])
    out = scores_to_probabilities({"sem_seg": probs, "sem_seg_kind": "probabilities"}, "sem_seg", 2, 0.15, 0)
    assert np.array_equal(out, probs.numpy())
    # an output without a kind takes the model's declared one
    assert np.array_equal(scores_to_probabilities({"sem_seg": probs}, "sem_seg", 2, 0.15, 0, "probabilities"),
                          probs.numpy())
    scores = torch.tensor([[[0.15, 0.15]], [[0.45, 0.0]]])  # IRN / SIPE: constant background
    out = scores_to_probabilities({"sem_seg": scores, "sem_seg_kind": "scores"}, "sem_seg", 2, 0.15, 0)
    assert out[:, 0, 0].tolist() == pytest.approx([0.25, 0.75]) and out[:, 0, 1].tolist() == pytest.approx([1, 0])


def test_cam_background_score_reaches_the_export(synthetic_dir, tmp_path, restore_loggers):
    """Foreground-only CAMs (the plain CAM, max-normalised) against TEST.EXPORT.CAM_BACKGROUND_SCORE."""
    config = os.path.join(CONFIGS, "synthetic", "cam_R18.yaml")
    name = tiny_subset("wss_synthetic_train_tags", 2, "wss_synthetic_train_tags_export_tiny")
    torch.manual_seed(0)
    weights = str(tmp_path / "cam.pth")
    torch.save({"model": build_model(get_wss_cfg(config, ["MODEL.WEIGHTS", ""])).state_dict()}, weights)

    def export(folder, *opts):
        _tool().main(["--config-file", config, "--weights", weights, "--dataset", name, "--source", "cams",
                      "--output", str(tmp_path / folder), "DATALOADER.NUM_WORKERS", "0", "TEST.SIPE.SCALES", "[1.0]",
                      *opts])
        return [read_label_map(str(tmp_path / folder / f"{r['image_id']}.png")) for r in DatasetCatalog.get(name)]

    assert any((label != 0).any() for label in export("default"))  # 0.15: the CAMs win somewhere
    assert all((label == 0).all() for label in export("high", "TEST.EXPORT.CAM_BACKGROUND_SCORE", "2.0"))


def test_spml_sources_are_documented_and_refuse_the_generic_flags(capsys):
    """SPML's stage-B generators (wss_d2.refinement.spml_generators) are --source values with --help text;
    they run their own masking and CRF, and only spml_knn takes (and needs) --memory-dataset."""
    from wss_d2.refinement import SPML_SOURCES

    tool = _tool()
    with pytest.raises(SystemExit):
        tool.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name in SPML_SOURCES:
        assert f"{name}: SPML (" in help_text
    base = ["--config-file", "x.yaml", "--dataset", "d", "--output", "o"]
    assert tool.parse_args(base + ["--source", "spml_softmax_rw"]).source == "spml_softmax_rw"
    assert tool.parse_args(base + ["--source", "spml_knn", "--memory-dataset", "m"]).memory_dataset == "m"
    for bad in (["--source", "spml_softmax_rw", "--crf"], ["--source", "spml_cam_rw", "--restrict-to-tags"],
                ["--source", "spml_knn"], ["--source", "spml_softmax_rw", "--memory-dataset", "m"],
                ["--memory-dataset", "m"]):
        with pytest.raises(SystemExit):
            tool.parse_args(base + bad)
    assert "--memory-dataset" in capsys.readouterr().err


def test_max_images_labels_the_first_images_with_progress_and_no_second_stage(confident_agmm, synthetic_dir, tmp_path,
                                                                              restore_loggers, capsys):
    _, _, weights = confident_agmm
    dataset = _tiny_val(synthetic_dir)
    out = tmp_path / "quick"
    report = _tool().main(["--config-file", AGMM_CONFIG, "--weights", weights, "--dataset", dataset, "--output",
                           str(out), "--max-images", "2", *FAST])
    first = [r["image_id"] for r in DatasetCatalog.get(dataset)]
    assert sorted(f for f in os.listdir(out) if f.endswith(".png")) == sorted(f"{i}.png" for i in first[:2])
    assert report["images"] == 2 and report["max_images"] == 2 and report["second_stage_command"] is None
    assert not (out / "second_stage.yaml").exists()
    progress = capsys.readouterr().err
    assert "export: 100%" in progress and "2/2" in progress  # images done, of how many
    with pytest.raises(SystemExit, match="--max-images must be >= 0"):
        _tool().main(["--config-file", AGMM_CONFIG, "--weights", weights, "--dataset", dataset, "--output",
                      str(tmp_path / "bad"), "--max-images", "-1", *FAST])


@pytest.mark.slow
def test_two_process_export_equals_one_process(confident_agmm, synthetic_dir, tmp_path):
    """--num-gpus 2 (GLOO processes on CPU, each with its CRF pool on every other image) writes the same
    labels and the same quality report as one process."""
    import json
    import subprocess
    import sys

    from .conftest import REPO

    _, _, weights = confident_agmm
    reports = {}
    for n in (1, 2):
        out = tmp_path / f"n{n}"
        command = [sys.executable, "tools/export_pseudo_labels.py", "--config-file", AGMM_CONFIG, "--weights", weights,
                   "--dataset", "wss_synthetic_val", "--max-images", "5", "--crf", "--threshold", "0.5",
                   "--output", str(out), "--num-gpus", str(n), *FAST]
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "WSS_DATASETS": os.path.dirname(synthetic_dir)})
        assert proc.returncode == 0, proc.stderr[-3000:]
        reports[n] = json.load(open(out / "pseudo_label_quality.json"))
        assert not [f for f in os.listdir(tmp_path) if f.startswith(f".n{n}")]  # no staging folder left
    pngs = sorted(f for f in os.listdir(tmp_path / "n1") if f.endswith(".png"))
    assert len(pngs) == 5 and pngs == sorted(f for f in os.listdir(tmp_path / "n2") if f.endswith(".png"))
    for name in pngs:
        assert np.array_equal(read_label_map(str(tmp_path / "n1" / name)), read_label_map(str(tmp_path / "n2" / name)))
    for key in ("images", "mIoU", "coverage", "pACC"):
        assert reports[1][key] == reports[2][key], key
