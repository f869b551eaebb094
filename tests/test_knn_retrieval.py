"""k-NN segment retrieval (wss_d2.refinement.knn, docs/spml.md §9.2) on toy prototypes."""
import torch
import torch.nn.functional as F

from wss_d2.refinement.knn import build_segment_memory, knn_segment_retrieval, knn_vote


def test_knn_vote_majority_ties_lowest_and_soft_scores():
    memory = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.0, 1.0], [0.1, 0.9]]), dim=1)
    labels = torch.tensor([3, 1, 1, 3, 7, 7])
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    lab, hist = knn_vote(query, memory, labels, k=4)
    # query 0: neighbours 0..3 -> votes 3,1,1,3: tie -> lowest label 1
    assert lab.tolist() == [1, 7]
    assert hist[0, 1].item() == 0.5 and hist[0, 3].item() == 0.5
    assert hist[1, 7].item() == 0.5
    lab, hist = knn_vote(query, memory, labels, k=20)  # k capped at the memory size: 2 votes each for 1, 3, 7
    assert lab.tolist() == [1, 1]
    assert torch.allclose(hist.sum(dim=1), torch.ones(2))


def test_memory_drops_only_void_majority():
    emb = torch.zeros(1, 2, 4, 8)
    emb[0, 0, :, :4] = 1.0
    emb[0, 1, :, 4:] = 1.0
    labels = torch.full((1, 4, 8), 255, dtype=torch.long)
    labels[0, :, 4:] = 21  # unlabelled (K = 21) majority: stays
    labels[0, 0, :2] = 5  # a minority inside the void-majority segment
    protos, mem_labels = build_segment_memory(emb, labels, grid=(1, 2))
    assert mem_labels.tolist() == [21]
    assert torch.allclose(protos[0], torch.tensor([0.0, 1.0]))


def test_retrieval_labels_pixels_and_single_segment_query():
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    mem_labels = torch.tensor([2, 4, 4])
    emb = torch.zeros(2, 2, 4, 4)
    emb[0, 0, :, :2] = 1.0
    emb[0, 1, :, 2:] = 1.0
    emb[1, 1] = 1.0  # one segment only
    labels, scores = knn_segment_retrieval(emb, memory, mem_labels, num_classes=5, k=1, grid=(2, 2))
    assert labels[0, :, :2].unique().tolist() == [2] and labels[0, :, 2:].unique().tolist() == [4]
    assert (labels[1] == 4).all()
    assert scores.shape == (2, 5, 4, 4) and torch.isfinite(scores).all()
    single, _ = knn_segment_retrieval(emb[1:], memory, mem_labels, num_classes=5, k=20, grid=(1, 1))
    assert (single == 4).all()
