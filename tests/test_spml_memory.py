"""SPML memory bank (FIFO, detached, image-id shift) and the cross-process gather (2 GLOO processes)."""
import datetime
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from wss_d2.methods.spml.losses import (
    SPMLCandidates,
    image_similarity_loss,
    semantic_annotation_loss,
    semantic_cooccurrence_loss,
)
from wss_d2.methods.spml.memory import PrototypeMemoryBank, append_memory, gather_segments
from wss_d2.methods.spml.segments import form_segments

K = 4
IMAGES = 4


def _fields(n, first_image=0, value=1.0):
    return {
        "prototypes": torch.full((n, 3), value),
        "labels": torch.arange(n),
        "images": torch.arange(n) // 2 + first_image,
        "tags": torch.ones(n, 2),
    }


def test_memory_bank_fifo_detached_and_shifted_ids():
    bank = PrototypeMemoryBank(size=2, images_per_batch=4)
    assert bank.fields() is None  # first iteration: empty
    a = _fields(4, value=1.0)
    a["prototypes"].requires_grad_(True)
    bank.push(a)
    m = bank.fields()
    assert not m["prototypes"].requires_grad
    assert m["images"].tolist() == [4, 4, 5, 5]  # out of the current batch's ids 0..3
    a["images"] += 100  # the memory holds a copy
    assert bank.fields()["images"].tolist() == [4, 4, 5, 5]
    bank.push(_fields(2, value=2.0))
    bank.push(_fields(6, value=3.0))
    m = bank.fields()
    assert len(bank) == 2
    # newest first; the oldest (value 1) left; stored ids shifted once per push
    assert m["prototypes"][:, 0].tolist() == [3.0] * 6 + [2.0] * 2
    assert m["images"].tolist() == [4, 4, 5, 5, 6, 6] + [8, 8]
    cand = append_memory(_fields(2), m)
    assert cand["images"].tolist() == [0, 0] + m["images"].tolist()
    empty = PrototypeMemoryBank(size=0)
    empty.push(_fields(2))
    assert empty.fields() is None


def test_gather_is_identity_on_one_process():
    f = _fields(3)
    out, offset = gather_segments(f, num_images=2)
    assert offset == 0 and out["prototypes"] is f["prototypes"]


def _batch():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(IMAGES, 6, 8, 8, generator=g)
    labels = torch.randint(0, K + 1, (IMAGES, 8, 8), generator=g)
    labels[1, :4] = 255  # different segment counts on the two processes
    regions = torch.randint(0, 3, (IMAGES, 8, 8), generator=g)
    tags = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 1.0], [1.0, 0, 0]])
    memory = {
        "prototypes": torch.nn.functional.normalize(torch.randn(5, 6, generator=g), dim=1),
        "labels": torch.tensor([0, 1, 2, K, 3]),
        "images": torch.tensor([4, 4, 5, 6, 7]),
        "tags": torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, 0]]),
    }
    return emb, labels, regions, tags, memory


def _losses(emb, labels, regions, tags, memory, gather):
    """Sum over this process's pixels of (C) and (O) and its images' (V) against the gathered batch + memory."""
    s = form_segments(emb, labels, K, regions=regions, tags=tags, grid=(2, 2), iterations=5)
    glob, offset = gather(s.fields(), emb.shape[0])
    cand = SPMLCandidates.from_fields(append_memory(glob, memory))
    own = s.pixel_segment + offset
    per_c = semantic_annotation_loss(s.pixel_embedding, s.pixel_label, own, cand, K, 6.0, return_per_pixel=True)
    per_o = semantic_cooccurrence_loss(s.pixel_embedding, cand.tags[own], own, cand, 8.0, return_per_pixel=True)
    # (V) in the exact mode: at κ = 16 the official subtract-and-test depends on the fp32 summation order
    v = image_similarity_loss(s, 16.0, exact=True) * emb.shape[0]
    return per_c, per_o, v, glob["images"], offset


def _no_labels_on_rank1(labels):
    out = labels.clone()
    out[IMAGES // 2:] = torch.where(out[IMAGES // 2:] == 255, out[IMAGES // 2:], torch.full_like(out[IMAGES // 2:], K))
    return out


def _annotation_only(emb, labels, regions, tags, memory, gather):
    s = form_segments(emb, labels, K, regions=regions, tags=tags, grid=(2, 2), iterations=5)
    glob, offset = gather(s.fields(), emb.shape[0])
    cand = SPMLCandidates.from_fields(append_memory(glob, memory))
    return semantic_annotation_loss(s.pixel_embedding, s.pixel_label, s.pixel_segment + offset, cand, K, 6.0)


def _worker(rank, world, tmpdir):
    dist.init_process_group("gloo", init_method=f"file://{tmpdir}/init", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    torch.set_num_threads(1)
    try:
        emb, labels, regions, tags, memory = _batch()
        n = IMAGES // world
        sl = slice(rank * n, (rank + 1) * n)
        e = emb[sl].clone().requires_grad_(True)
        per_c, per_o, v, images, offset = _losses(e, labels[sl], regions[sl], tags[sl], memory, gather_segments)
        (per_c.sum() + per_o.sum() + v).backward()
        # a process whose crops have no labelled pixel: its (C) is an empty mean and must still run the
        # gather's backward (else the other process waits forever)
        e2 = emb[sl].clone().requires_grad_(True)
        c2 = _annotation_only(e2, _no_labels_on_rank1(labels)[sl], regions[sl], tags[sl], memory, gather_segments)
        c2.backward()
        torch.save(dict(per_c=per_c.detach(), per_o=per_o.detach(), v=v.detach(), grad=e.grad,
                        images=images, offset=offset, c2=c2.detach(), grad2=e2.grad),
                   os.path.join(tmpdir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_process_gather_equals_one_process(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, str(tmp_path)), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]

    emb, labels, regions, tags, memory = _batch()
    e = emb.clone().requires_grad_(True)
    per_c, per_o, v, images, _ = _losses(e, labels, regions, tags, memory, lambda f, n: (f, 0))
    (per_c.sum() + per_o.sum() + v).backward()

    assert ranks[0]["offset"] == 0 and ranks[1]["offset"] > 0
    assert torch.equal(ranks[0]["images"], images) and torch.equal(ranks[1]["images"], images)  # global ids
    assert torch.allclose(torch.cat([r["per_c"] for r in ranks]), per_c, atol=1e-5)
    assert torch.allclose(torch.cat([r["per_o"] for r in ranks]), per_o, atol=1e-5)
    assert torch.allclose(sum(r["v"] for r in ranks), v, atol=1e-5)
    assert torch.allclose(torch.cat([r["grad"] for r in ranks]), e.grad, atol=1e-5)

    # rank 1 without labelled pixel: its (C) is 0, rank 0's equals the whole batch's (rank 0's pixels only)
    e2 = emb.clone().requires_grad_(True)
    c2 = _annotation_only(e2, _no_labels_on_rank1(labels), regions, tags, memory, lambda f, n: (f, 0))
    c2.backward()
    assert ranks[1]["c2"].item() == 0.0
    assert ranks[0]["c2"].item() > 0 and abs(ranks[0]["c2"].item() - c2.item()) < 1e-5
    assert torch.allclose(torch.cat([r["grad2"] for r in ranks]), e2.grad, atol=1e-5)
