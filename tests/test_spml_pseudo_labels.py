"""
SPML's stage-B pseudo labels (docs/spml.md §9.2-§9.4, §9.6): the embedding random walk, flip averaging,
the class masking of the generators, the k-NN floor, the DensePose void restore, and one export through
tools/export_pseudo_labels.py. The model is a small real nn.Module with the SPMLEmbedder inference
contract (unit "embedding" and aux "sem_seg" logits at the input's size).
"""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb
from detectron2.modeling import META_ARCH_REGISTRY

from wss_d2 import get_wss_cfg
from wss_d2.data import WeakLabelDatasetMapper, read_label_map
from wss_d2.data.datasets import register_pseudo_label_dataset
from wss_d2.refinement import random_walk, transition_matrix
from wss_d2.refinement.embedding_walk import embedding_affinity, embedding_random_walk, walk_embedding, walk_size
from wss_d2.refinement.spml_generators import (
    cam_class_scores, cam_rw_probabilities, class_max_normalize, crf_pseudo_labels, densepose_nn_probabilities,
    knn_probabilities, model_pass, present_classes, softmax_rw1_probabilities, softmax_rw_probabilities, spml_crf,
    spml_probabilities,
)

from .conftest import CONFIGS, load_script

K = 6


class StandInEmbedder(nn.Module):
    """
    embedding = normalize(W (image / 255 − 0.5) + b) (a 1x1 conv, flip-equivariant), logits = a 1x1 conv
    of it; optionally an extra x-coordinate channel that breaks the flip equivariance.
    """

    sem_seg_kind = "logits"

    def __init__(self, cfg=None, num_classes=K, positional=False):
        super().__init__()
        if cfg is not None:
            num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        self.positional = positional
        self.embed = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.embed.weight.copy_(torch.eye(3)[:, :, None, None])
            self.embed.bias.zero_()
        self.classifier = nn.Conv2d(4 if positional else 3, num_classes, 1)
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            self.classifier.weight.copy_(3 * torch.randn(self.classifier.weight.shape, generator=generator))
            self.classifier.bias.zero_()

    def forward(self, batched_inputs):
        outputs = []
        for item in batched_inputs:
            x = item["image"].float()[None] / 255.0 - 0.5
            e = self.embed(x)
            if self.positional:
                e = torch.cat([e, torch.linspace(-1, 1, x.shape[-1]).expand(1, 1, *x.shape[-2:])], dim=1)
            e = F.normalize(e, dim=1)
            outputs.append({"embedding": e[0], "sem_seg": self.classifier(e)[0], "sem_seg_kind": "logits"})
        return outputs


if "SPMLStandInEmbedder" not in META_ARCH_REGISTRY:
    META_ARCH_REGISTRY.register(type("SPMLStandInEmbedder", (StandInEmbedder,), {}))


def _two_colour_image(h=32, w=32, split=16):
    """(3, h, w) uint8: red left of column `split`, green right of it."""
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    image[0, :, :split] = 255
    image[1, :, split:] = 255
    return image


# ------------------------------------------------------------------ embedding random walk
def test_affinity_is_exp_5_cos_minus_1_averaged_over_passes():
    a = F.normalize(torch.tensor([[1.0, 0.6], [0.0, 0.8]]), dim=0).reshape(2, 1, 2)  # two unit pixels, cos 0.6
    b = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).reshape(2, 1, 2)  # identical pixels
    aff = embedding_affinity([a, b])
    assert aff[0, 0].item() == pytest.approx(1.0)
    assert aff[0, 1].item() == pytest.approx((math.exp(5 * (0.6 - 1)) + 1.0) / 2)
    assert torch.allclose(aff, aff.t())


def test_walk_stays_within_a_segment_and_spreads_uniformly():
    # 2-segment embedding on a 4 x 4 grid: left 8 pixels e0, right 8 pixels e1 (orthogonal)
    emb = torch.zeros(2, 4, 4)
    emb[0, :, :2] = 1.0
    emb[1, :, 2:] = 1.0
    scores = torch.zeros(2, 4, 4)
    scores[0, 1, 0] = 1.0  # a seed of class 0 on the left
    scores[1, 2, 3] = 1.0  # a seed of class 1 on the right
    walked = embedding_random_walk(scores, [emb], exp_times=6)
    # A^20 is 1 inside a segment and e^-100 across: T_ij = 1/8 inside; the mass 1 spreads as 1/8 per pixel
    assert torch.allclose(walked[0, :, :2], torch.full((4, 2), 1 / 8), atol=1e-6)
    assert walked[0, :, 2:].abs().max().item() < 1e-30
    assert torch.allclose(walked[1, :, 2:], torch.full((4, 2), 1 / 8), atol=1e-6)
    assert walked[1, :, :2].abs().max().item() < 1e-30
    # the generic steps: the same as transition_matrix(A, 20, 6) and random_walk
    same = random_walk(scores, transition_matrix(embedding_affinity([emb]), beta=20, exp_times=6))
    assert torch.allclose(walked, same)
    # upsampling to the image size is bilinear
    up = embedding_random_walk(scores, [emb], exp_times=6, output_size=(32, 32))
    assert up.shape == (2, 32, 32) and up[0, :, :12].min().item() == pytest.approx(1 / 8, abs=1e-6)


def test_walk_grid_and_renormalised_resize():
    assert walk_size(375, 500) == (46, 62) and walk_size(5, 5) == (1, 1)
    emb = torch.randn(4, 16, 24)
    small = walk_embedding(emb, (2, 3))
    assert small.shape == (4, 2, 3) and torch.allclose(small.norm(dim=0), torch.ones(2, 3))
    # flipped back before the resize
    assert torch.allclose(walk_embedding(emb.flip(-1), (2, 3), flipped=True), small, atol=1e-6)


def test_flipped_pass_is_flipped_back_and_averaged():
    image = torch.randint(0, 256, (3, 16, 24), dtype=torch.uint8)
    equivariant = StandInEmbedder().eval()
    plain, flipped = model_pass(equivariant, {"image": image}), model_pass(equivariant, {"image": image}, flip=True)
    assert torch.allclose(plain.embedding, flipped.embedding, atol=1e-6)
    assert torch.allclose(plain.logits, flipped.logits, atol=1e-5)
    # a model that sees the x coordinate: the generator averages the two (un-flipped) passes' probabilities
    model = StandInEmbedder(positional=True).eval()
    d = {"image": image, "image_labels": torch.ones(K)}
    grid = walk_size(16, 24)
    passes = [model_pass(model, d, 1.0, f) for f in (False, True)]
    probs = sum(torch.softmax(F.interpolate(p.logits[None], grid, mode="bilinear", align_corners=False)[0], 0)
                for p in passes) / 2
    probs = probs / probs.flatten(1).max(1).values[:, None, None]
    expected = embedding_random_walk(probs, [walk_embedding(p.embedding, grid) for p in passes], exp_times=6,
                                     output_size=(16, 24))
    assert torch.allclose(softmax_rw_probabilities(model, d, K), expected, atol=1e-5)
    one_pass = softmax_rw_probabilities(model, d, K, flips=(False,))
    assert not torch.allclose(one_pass, expected, atol=1e-3)


# ------------------------------------------------------------------ class masking
def test_class_max_normalisation_and_the_015_floor():
    probs = torch.tensor([[[0.2, 0.4]], [[0.1, 0.05]], [[0.06, 0.12]]])
    present = torch.tensor([True, False, True])
    zeroed = class_max_normalize(probs, present)
    assert torch.allclose(zeroed[:, 0], torch.tensor([[0.5, 1.0], [0.0, 0.0], [0.5, 1.0]]))
    kept = class_max_normalize(probs, present, floor=0.15, zero_absent=False)
    # class 0: max 0.4 > 0.15; class 1 absent: unchanged; class 2: max 0.12 < 0.15, divided by 0.15
    assert torch.allclose(kept[:, 0], torch.tensor([[0.5, 1.0], [0.1, 0.05], [0.4, 0.8]]))


def test_present_classes_come_from_the_weak_label_map():
    sparse = torch.tensor([[2, K, 255], [4, 4, K]])
    assert present_classes({"sparse_sem_seg": sparse}, K).tolist() == [False, False, True, False, True, False]
    assert present_classes({"image_labels": torch.tensor([1.0, 0, 1, 0, 0, 0])}, K).tolist()[:3] == [True, False, True]
    with pytest.raises(KeyError, match="no weak label"):
        present_classes({}, K)


@pytest.mark.parametrize("generator", [softmax_rw_probabilities, softmax_rw1_probabilities])
def test_rw_generators_zero_absent_classes_and_background(generator):
    image = _two_colour_image()
    sparse = torch.full((32, 32), K, dtype=torch.long)
    sparse[5, 5], sparse[20, 25] = 2, 4  # scribble pixels of classes 2 and 4; no background seed
    model = StandInEmbedder().eval()
    probs = generator(model, {"image": image, "sparse_sem_seg": sparse}, K)
    assert probs.shape == (K, 32, 32) and probs.min() >= 0 and probs.max() <= 1
    assert probs[[0, 1, 3, 5]].abs().max().item() == 0  # absent classes, background included
    assert probs[2].max() > 0 and probs[4].max() > 0
    sparse[0, 0] = 0  # a background seed: background stays
    assert generator(model, {"image": image, "sparse_sem_seg": sparse}, K)[0].max() > 0


def test_logits_average_before_softmax_in_d_and_after_in_a():
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    d = {"image": image, "image_labels": torch.ones(K)}
    model = StandInEmbedder(positional=True).eval()
    grid = walk_size(16, 16)
    passes = [model_pass(model, d, s, f) for s in (0.75, 1.0) for f in (False, True)]
    small = [F.interpolate(p.logits[None], grid, mode="bilinear", align_corners=False)[0] for p in passes]
    probs = torch.softmax(sum(small) / 4, 0)
    probs = probs / probs.flatten(1).max(1).values[:, None, None]
    walk = [walk_embedding(p.embedding, grid) for p in passes]
    expected = embedding_random_walk(probs, walk, exp_times=0, output_size=(16, 16))
    assert torch.allclose(softmax_rw1_probabilities(model, d, K), expected, atol=1e-5)


def test_knn_generator_keeps_absent_classes_and_floors_present_ones():
    image = _two_colour_image()
    model = StandInEmbedder().eval()
    red = model_pass(model, {"image": image}).embedding[:, 0, 0]
    green = model_pass(model, {"image": image}).embedding[:, 0, -1]
    # memory: red segments vote 1 (3 of 20) and 3 (17 of 20); green segments vote 2 (20)
    memory = torch.stack([red] * 20 + [green] * 20)
    labels = torch.tensor([1] * 3 + [3] * 17 + [2] * 20)
    sparse = torch.full((32, 32), K, dtype=torch.long)
    sparse[0, 0], sparse[0, 31] = 1, 2  # classes 1 and 2 present; 3 absent
    probs = knn_probabilities(model, {"image": image, "sparse_sem_seg": sparse}, K, memory, labels,
                              scales=(1.0,), grid=(2, 2))
    # class 1: max 3/20 = 0.15 -> divided by 0.15 = 1; class 3 absent: its 17/20 votes stay unnormalised
    assert probs[1, :, :8].mean().item() == pytest.approx(1.0, abs=1e-5)
    assert probs[3, :, :8].mean().item() == pytest.approx(0.85, abs=1e-5)
    assert probs[2, :, 24:].mean().item() == pytest.approx(1.0, abs=1e-5)
    labels[:3] = 5  # class 1 gets no vote at all: max 0, stays 0 (no division by zero)
    probs = knn_probabilities(model, {"image": image, "sparse_sem_seg": sparse}, K, memory, labels,
                              scales=(1.0,), grid=(2, 2))
    assert torch.isfinite(probs).all() and probs[1].max() == 0


def test_densepose_generator_labels_by_nearest_prototype_and_restores_void():
    image = _two_colour_image()
    points = torch.full((32, 32), K, dtype=torch.long)
    points[4, 4] = 1  # a torso point on the red half
    points[4, 28] = 3  # a hand point on the green half
    points[20:, 20:] = 255  # a void block on the green half
    model = StandInEmbedder().eval()
    probs, void = densepose_nn_probabilities(model, {"image": image, "sparse_sem_seg": points}, K, grid=(2, 2))
    assert void.tolist() == (points == 255).tolist()
    assert probs[[0, 2, 4, 5]].abs().max().item() == 0  # absent (no point) classes zeroed, background too
    labels = probs.argmax(0)
    assert (labels[:, :14] == 1).all() and (labels[:, 18:] == 3).all()  # void pixels were clustered too
    rgb = image.permute(1, 2, 0).numpy().copy()
    (_, label), = list(crf_pseudo_labels([("x", rgb, probs, void)], None))
    assert (label[20:, 20:] == 255).all() and (label[:20, 18:] == 3).all() and (label[:, :14] == 1).all()


def test_cam_generator_background_power_6_and_walk():
    cams = torch.tensor([[[0.8, 0.2]], [[0.1, 0.5]]])  # classes 2 and 4, SIPE-style file without background
    scores = cam_class_scores(cams, torch.tensor([2, 4]), K)
    assert scores[0, 0].tolist() == pytest.approx([0.2 ** 6, 0.5 ** 6])
    assert scores[2, 0].tolist() == pytest.approx([0.8, 0.2]) and scores[[1, 3, 5]].abs().max() == 0
    with_bg = cam_class_scores(torch.cat([torch.ones(1, 1, 2), cams]), torch.tensor([0, 2, 4]), K)
    assert torch.allclose(with_bg, scores)  # a background map in the file is replaced by (1 - max)^6
    image = _two_colour_image()
    maps = torch.zeros(1, 32, 32)
    maps[0, :, :16] = 1.0  # class 3 on the red half
    probs = cam_rw_probabilities(StandInEmbedder().eval(), {"image": image, "cams": maps,
                                                             "cam_labels": torch.tensor([3])}, K)
    assert probs.shape == (K, 32, 32) and (probs.argmax(0)[:, :14] == 3).all() and (probs.argmax(0)[:, 18:] == 0).all()
    assert probs[[1, 2, 4, 5]].abs().max() == 0


def test_spml_crf_takes_unnormalised_maps_with_spml_parameters():
    cfg = get_wss_cfg()
    crf = spml_crf(cfg, K)
    assert (crf.iterations, crf.pos_w, crf.pos_xy_std, crf.bi_w, crf.bi_xy_std, crf.bi_rgb_std) == (10, 3, 1, 4, 67, 3)
    probs = np.zeros((K, 8, 8), np.float32)
    probs[2] = 0.3  # sums 0.3: refused by the plain TEST.CRF check, taken here
    probs[4, :, 4:] = 0.9
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, 4:] = 255
    refined = crf(rgb, probs)
    labels = refined.argmax(0)
    assert refined.shape == (K, 8, 8) and (labels[:, :3] == 2).all() and (labels[:, 5:] == 4).all()


def test_dispatch_needs_a_memory_for_knn():
    with pytest.raises(ValueError, match="memory"):
        spml_probabilities("spml_knn", StandInEmbedder(), {"image": _two_colour_image()}, K)
    with pytest.raises(ValueError, match="one of"):
        spml_probabilities("nope", StandInEmbedder(), {"image": _two_colour_image()}, K)


def test_dispatch_passes_the_kmeans_grid_to_the_clustering_generators():
    image = _two_colour_image()
    points = torch.full((32, 32), K, dtype=torch.long)
    points[4, 4], points[4, 28] = 1, 3
    inputs = {"image": image, "sparse_sem_seg": points}
    model = StandInEmbedder().eval()
    for grid in ((2, 2), (1, 1)):
        direct = densepose_nn_probabilities(model, inputs, K, grid=grid)
        dispatched = spml_probabilities("spml_densepose_nn_rw", model, inputs, K, grid=grid)
        assert torch.equal(direct[0], dispatched[0])
    # the grid reaches the clustering: one cluster over the image and a 2 x 2 grid give different segments
    one = spml_probabilities("spml_densepose_nn_rw", model, inputs, K, grid=(1, 1))[0]
    two = spml_probabilities("spml_densepose_nn_rw", model, inputs, K, grid=(2, 2))[0]
    assert not torch.equal(one, two)


# ------------------------------------------------------------------ export through the CLI
CONFIG = os.path.join(CONFIGS, "synthetic", "pce_R18_points.yaml")
TINY = "wss_synthetic_train_points_spml_tiny"
OPTS = ["MODEL.META_ARCHITECTURE", "SPMLStandInEmbedder", "DATALOADER.NUM_WORKERS", "0", "TEST.CRF.NUM_WORKERS", "1",
        "MODEL.DEVICE", "cpu"]


def _tiny(synthetic_dir):
    if TINY not in DatasetCatalog.list():
        records = DatasetCatalog.get("wss_synthetic_train_points")[:2]  # read once: the full list is slow
        DatasetCatalog.register(TINY, lambda: [dict(r) for r in records])
        meta = MetadataCatalog.get("wss_synthetic_train_points").as_dict()
        meta.pop("name")
        MetadataCatalog.get(TINY).set(**meta)
    return TINY


def test_export_cli_with_spml_generators(synthetic_dir, tmp_path, restore_loggers):
    tool = load_script("tools/export_pseudo_labels.py")
    cfg = get_wss_cfg(CONFIG, OPTS)
    model = StandInEmbedder(cfg).eval()
    weights = str(tmp_path / "standin.pth")
    torch.save({"model": model.state_dict()}, weights)
    dataset = _tiny(synthetic_dir)
    out = tmp_path / "rw"
    report = tool.main(["--config-file", CONFIG, "--weights", weights, "--dataset", dataset, "--output", str(out),
                        "--source", "spml_softmax_rw", *OPTS])
    assert report["images"] == 2 and report["crf"] and report["source"] == "spml_softmax_rw"
    mapper = WeakLabelDatasetMapper(cfg, is_train=False, dataset_names=[dataset])
    records = DatasetCatalog.get(dataset)
    crf = spml_crf(cfg, K)
    for record in records:
        d = mapper(dict(record))
        probs = softmax_rw_probabilities(model, d, K).numpy()
        rgb = np.ascontiguousarray(convert_image_to_rgb(d["image"].permute(1, 2, 0).numpy(), cfg.INPUT.FORMAT))
        expected = crf(rgb, probs).argmax(0)
        label = read_label_map(str(out / f"{record['image_id']}.png"))
        assert label.shape == (record.get("height", d["height"]), record.get("width", d["width"]))
        assert np.array_equal(label, expected)
        present = present_classes(d, K).numpy()
        assert present[np.unique(label)].all()  # only the classes of the weak label
    # the k-NN generator on a memory of these pseudo labels
    register_pseudo_label_dataset("spml_tiny_memory", dataset, str(out))
    report = tool.main(["--config-file", CONFIG, "--weights", weights, "--dataset", dataset, "--output",
                        str(tmp_path / "knn"), "--source", "spml_knn", "--memory-dataset", "spml_tiny_memory", *OPTS])
    assert report["images"] == 2
    with pytest.raises(SystemExit):
        tool.parse_args(["--config-file", CONFIG, "--dataset", dataset, "--output", "o", "--source", "spml_knn"])
    with pytest.raises(SystemExit):
        tool.parse_args(["--config-file", CONFIG, "--dataset", dataset, "--output", "o", "--source",
                         "spml_softmax_rw", "--crf"])
