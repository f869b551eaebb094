"""
SPML's cross-process segment gather and prototype memory bank.

Gather (`gather_segments`): every process forms the segments of its own images, then all segment fields
(prototypes, labels, image ids, tags, ...) are all-gathered so that each process contrasts its own pixels
with the segments of the global batch. Segment counts differ per process: each field is padded to the
largest count, gathered, and the padding is dropped. Prototype fields are gathered with gradients: the
backward sums the gradients of all processes for each process's part (an all-reduce), so every process
receives the gradient of the sum over processes of their losses; DDP's averaging then gives the gradient
of (1/G)·Σ_g L_g. Image ids are made global (offset by the image counts of the preceding processes).
On one process (or without an initialised process group) it returns the fields unchanged.

Memory bank (`PrototypeMemoryBank`): a FIFO of the last `size` global segment sets (VOC 2, DensePose 0),
stored detached, with their labels, image ids and tags; pushed after each optimiser step. On every push
the stored image ids move up by the global batch size, so they never collide with the current batch's ids
(nor with each other). The memory is appended to the candidates of (C), (O) and (A), never of (V). It is
not part of a checkpoint; the first iteration (and the first after a resume) sees an empty memory.
"""
from collections import deque
from typing import Dict, Iterable, Optional, Tuple

import torch
import torch.distributed as dist

DIFFERENTIABLE_FIELDS = ("prototypes",)  # the affinity prototypes only pick labels, without gradient


def _world() -> Tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class _AllGatherWithGrad(torch.autograd.Function):
    """[N, ...] (same shape on every process) -> [world, N, ...]; backward all-reduces and keeps our slice."""

    @staticmethod
    def forward(ctx, x):
        world, rank = _world()
        ctx.rank = rank
        out = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(out, x.contiguous())
        return torch.stack(out)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank]


def _pad(x: torch.Tensor, n: int) -> torch.Tensor:
    if x.shape[0] == n:
        return x
    return torch.cat([x, x.new_zeros((n - x.shape[0],) + tuple(x.shape[1:]))])


def gather_segments(
    fields: Dict[str, torch.Tensor],
    num_images: int,
    image_key: str = "images",
    differentiable: Iterable[str] = DIFFERENTIABLE_FIELDS,
) -> Tuple[Dict[str, torch.Tensor], int]:
    """
    fields: name -> [S_local, ...] tensors of this process (None values are passed through).
    Returns (global fields in rank order, index of this process's first segment in them).
    """
    world, rank = _world()
    if world == 1:
        return dict(fields), 0
    some = next(v for v in fields.values() if v is not None)
    device = some.device
    counts = torch.tensor([some.shape[0], num_images], device=device, dtype=torch.long)
    all_counts = [torch.empty_like(counts) for _ in range(world)]
    dist.all_gather(all_counts, counts)
    all_counts = torch.stack(all_counts).cpu()
    seg_counts = all_counts[:, 0].tolist()
    img_offsets = [0] + torch.cumsum(all_counts[:, 1], 0).tolist()[:-1]
    n_max = max(seg_counts)
    keep = torch.cat([torch.arange(c, device=device) + r * n_max for r, c in enumerate(seg_counts)])
    diff = set(differentiable)
    out = {}
    for name, value in fields.items():
        if value is None:
            out[name] = None
            continue
        padded = _pad(value, n_max)
        if name in diff and value.requires_grad:
            stacked = _AllGatherWithGrad.apply(padded)
        else:
            parts = [torch.empty_like(padded) for _ in range(world)]
            dist.all_gather(parts, padded.detach().contiguous())
            stacked = torch.stack(parts)
        if name == image_key:
            shift = torch.tensor(img_offsets, device=device, dtype=stacked.dtype)
            stacked = stacked + shift.reshape((world,) + (1,) * (stacked.dim() - 1))
        out[name] = stacked.reshape((world * n_max,) + tuple(value.shape[1:]))[keep]
    return out, sum(seg_counts[:rank])


class PrototypeMemoryBank:
    """FIFO of the last `size` (detached) global segment sets; `images_per_batch` = global batch size."""

    def __init__(self, size: int = 2, images_per_batch: int = 16, image_key: str = "images"):
        self.size = size
        self.images_per_batch = images_per_batch
        self.image_key = image_key
        self._entries = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self):
        self._entries.clear()

    @torch.no_grad()
    def push(self, fields: Dict[str, torch.Tensor]):
        """Store a detached copy of the global segment fields (after the optimiser step)."""
        if self.size <= 0:
            return
        for entry in self._entries:
            entry[self.image_key] += self.images_per_batch
        entry = {k: (None if v is None else v.detach().clone()) for k, v in fields.items()}
        entry[self.image_key] += self.images_per_batch
        self._entries.appendleft(entry)  # newest first
        while len(self._entries) > self.size:
            self._entries.pop()

    def fields(self) -> Optional[Dict[str, torch.Tensor]]:
        """The stored fields concatenated, newest first; None when empty."""
        if not self._entries:
            return None
        names = self._entries[0].keys()
        return {
            k: (None if self._entries[0][k] is None else torch.cat([e[k] for e in self._entries]))
            for k in names
        }


def append_memory(current: Dict[str, torch.Tensor], memory: Optional[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """
    Candidates = current (global) fields followed by the memory's, field by field; a field the memory
    lacks becomes None (it would not cover the memory's segments).
    """
    if memory is None:
        return dict(current)
    out = {}
    for k, v in current.items():
        m = memory.get(k)
        out[k] = None if (v is None or m is None) else torch.cat([v, m.to(v.dtype)])
    return out
