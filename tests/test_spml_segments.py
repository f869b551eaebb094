"""SPML segment formation: grid initialisation over the padded crop, empty cells, splits, prototypes."""
import pytest
import torch
import torch.nn.functional as F

from wss_d2.methods.spml.segments import distance_kernel, form_segments, smoothed_color_features
from wss_d2.modeling.kmeans import grid_cluster_ids, location_features, segment_majority, spherical_kmeans


def test_grid_ids_round_a_linspace():
    ids = grid_cluster_ids(4, 6, 2, 2)
    # rows round(linspace(0,1,4)) = 0,0,1,1; cols round(linspace(0,1,6)) = 0,0,0,1,1,1; id = row + 2*col
    assert ids.tolist() == [[0, 0, 0, 2, 2, 2], [0, 0, 0, 2, 2, 2], [1, 1, 1, 3, 3, 3], [1, 1, 1, 3, 3, 3]]
    assert grid_cluster_ids(3, 3, 6, 6).unique().numel() == 9  # fewer pixels than cells: ids not re-indexed


def test_location_features_range():
    loc = location_features(3, 5)
    assert loc[0, :, 0].tolist() == [-0.5, 0.0, 0.5]
    assert loc[1, 0].tolist() == [-0.5, -0.25, 0.0, 0.25, 0.5]


def _padded_toy():
    # 8x8 crop whose right half is padding (void); top rows embed along e0, bottom rows along e1
    emb = torch.zeros(1, 3, 8, 8)
    emb[0, 0, :4] = 1.0
    emb[0, 1, 4:] = 1.0
    labels = torch.ones(1, 8, 8, dtype=torch.long)
    labels[..., 4:] = 255
    return emb, labels


def test_grid_over_padded_crop_and_empty_cells():
    emb, labels = _padded_toy()
    s = form_segments(emb, labels, 21, grid=(2, 2), iterations=10)
    # the 2x2 grid covers the padded crop: cells 2 and 3 lie in the padding, stay empty (zero centre,
    # cosine 0) and never win a pixel; the image part keeps 2 clusters, not 4
    assert s.num_segments == 2
    assert s.cluster_ids[0, :4, :4].unique().tolist() == [0]
    assert s.cluster_ids[0, 4:, :4].unique().tolist() == [1]
    assert (s.cluster_ids[0, :, 4:] == -1).all()
    assert s.segment_cluster.tolist() == [0, 1]
    assert s.segment_size.tolist() == [16, 16]


def test_kmeans_zero_centre_for_empty_cluster():
    # cluster 1 is empty: its centre is zero, so a pixel with negative cosine to centre 0 moves to it
    f = F.normalize(torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-1.0, 0.1]]]), dim=2)
    init = torch.zeros(1, 4, dtype=torch.long)
    ids = spherical_kmeans(f, init, torch.ones(1, 4, dtype=torch.bool), num_clusters=2, iterations=1)
    assert ids.tolist() == [[0, 0, 0, 1]]
    # void pixels never enter a centre: the same without the odd pixel keeps it out of the centre
    valid = torch.tensor([[True, True, True, False]])
    ids = spherical_kmeans(f, init, valid, num_clusters=2, iterations=1)
    assert ids[0, :3].tolist() == [0, 0, 0]


def _split_toy():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(2, 4, 4, 4, generator=g)
    k = 5
    labels = torch.full((2, 4, 4), k, dtype=torch.long)  # unlabelled
    labels[0, :, :2] = 1
    labels[0, 0, 0] = 255
    labels[1] = 3
    regions = torch.zeros(2, 4, 4, dtype=torch.long)
    regions[:, 2:] = 7
    tags = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    return emb, labels, regions, tags, k


def test_segments_split_by_region_and_label():
    emb, labels, regions, tags, k = _split_toy()
    s = form_segments(emb, labels, k, regions=regions, tags=tags, grid=(1, 1), iterations=10)
    # image 0: {label 1, unlabelled} x {region 0, 7}; image 1: label 3 x {region 0, 7}
    assert s.num_segments == 6
    assert s.segment_image.tolist() == [0, 0, 0, 0, 1, 1]
    assert s.segment_label.tolist() == [1, 1, 5, 5, 3, 3]
    assert s.segment_region.tolist() == [0, 7, 0, 7, 0, 7]
    assert s.segment_size.tolist() == [3, 4, 4, 4, 8, 8]  # the void pixel is dropped
    assert s.pixel_embedding.shape[0] == 31
    assert torch.equal(s.segment_tags, tags[[0, 0, 0, 0, 1, 1]])
    # prototypes: renormalised mean of the unit embeddings
    unit = F.normalize(emb, dim=1)
    mask = (labels[0] == 1) & (regions[0] == 7)
    expected = F.normalize(unit[0][:, mask].mean(dim=1), dim=0)
    assert torch.allclose(s.prototypes[1], expected, atol=1e-6)
    # each pixel's own segment has its label and region
    assert torch.equal(s.segment_label[s.pixel_segment], s.pixel_label)
    assert torch.equal(s.segment_region[s.pixel_segment], s.pixel_region)
    assert torch.equal(s.segment_image[s.pixel_segment], s.pixel_image)


def test_unlabeled_as_void_switch():
    emb, labels, regions, tags, k = _split_toy()
    s = form_segments(emb, labels, k, regions=regions, tags=tags, grid=(1, 1), unlabeled_as_void=True)
    assert s.segment_label.tolist() == [1, 1, 3, 3]
    assert (s.cluster_ids[0][labels[0] == k] == -1).all()


def test_segments_cluster_split_and_gradients():
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(3, 6, 8, 8, generator=g).requires_grad_(True)
    labels = torch.randint(0, 3, (3, 8, 8), generator=g)
    s = form_segments(emb, labels, 2, grid=(2, 2), iterations=10)
    keys = torch.stack([s.segment_image, s.segment_cluster, s.segment_label, s.segment_region], 1)
    assert keys.unique(dim=0).shape[0] == s.num_segments  # unique triples per image
    assert (s.segment_image.diff() >= 0).all()
    # cluster prototypes live in [ê ⊕ xy], renormalised
    assert s.cluster_prototypes.shape[1] == 8
    assert torch.allclose(s.cluster_prototypes.norm(dim=1), torch.ones(s.num_segments), atol=1e-5)
    (s.prototypes.sum() + s.cluster_prototypes.sum()).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_majority_ties_lowest():
    values, counts = segment_majority(torch.tensor([0, 0, 1, 1, 1]), torch.tensor([4, 2, 7, 7, 255]), 2)
    assert values.tolist() == [2, 7]
    assert counts[1, 255] == 1


def test_color_features():
    k = distance_kernel(5)
    assert k[2, 2] == 0 and k.sum().item() == pytest.approx(1.0)
    assert k[0, 0] > k[0, 2] > k[1, 2]
    img = torch.randn(2, 3, 20, 24)
    c = smoothed_color_features(img, (8, 8))
    assert c.shape == (2, 3, 8, 8)
    assert torch.allclose(c.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-6)
    assert torch.allclose(c.abs().amax(dim=(2, 3)), torch.ones(2, 3))
    s = form_segments(torch.randn(2, 4, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), 2, extra_cluster_features=c,
                      affinity_scale=0.1)
    assert s.cluster_prototypes.shape[1] == 4 + 2 + 3
    assert s.aff_prototypes.shape == s.cluster_prototypes.shape
    assert set(s.fields()) == {"prototypes", "labels", "images", "regions", "tags", "aff_prototypes"}
