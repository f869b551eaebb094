"""
What a model's `sem_seg` holds, and the one conversion of it to per-pixel probabilities.

Every segmentor declares the kind of its `sem_seg` scores instead of leaving consumers (the
evaluator's CRF, TTA, the pseudo-label export) to guess it from the values:

  * "logits": unnormalised class scores; probabilities = softmax over the class axis
    (detectron2's SemanticSegmentor contract, the default for a model that declares nothing);
  * "probabilities": a distribution over the classes at every pixel, used as it is;
  * "scores": non-negative, not normalised maps, e.g. max-normalised CAMs with a constant
    background score; probabilities = the maps divided by their per-pixel sum.

A model declares its kind with a `sem_seg_kind` attribute (`SEM_SEG_KIND_KEY`) and puts the
same string under `outputs[i]["sem_seg_kind"]`, so that consumers that see only outputs (an
evaluator) read it there; wrappers (TTA) declare the kind of what they return.
"""
from typing import Mapping, Optional

import torch
from torch import nn

__all__ = [
    "SEM_SEG_KINDS",
    "SEM_SEG_KIND_KEY",
    "check_sem_seg_kind",
    "model_sem_seg_kind",
    "output_sem_seg_kind",
    "to_probabilities",
]

SEM_SEG_KINDS = ("logits", "probabilities", "scores")
# the attribute of a model and the key of its output dicts that name the kind
SEM_SEG_KIND_KEY = "sem_seg_kind"
# detectron2's semantic contract: `sem_seg` holds logits
DEFAULT_SEM_SEG_KIND = "logits"
# per-pixel sums of "scores" at or below this are treated as "no evidence" (uniform)
_SCORE_SUM_EPS = 1e-8


def check_sem_seg_kind(kind, where: str) -> str:
    """`kind` if it is one of SEM_SEG_KINDS, else a ValueError naming `where` it came from."""
    if kind not in SEM_SEG_KINDS:
        raise ValueError(f"{where}: sem_seg kind {kind!r} is not one of {list(SEM_SEG_KINDS)}")
    return kind


def model_sem_seg_kind(model: nn.Module) -> str:
    """
    The kind a model declares for its `sem_seg` (attribute `sem_seg_kind`), looking through
    DistributedDataParallel-style wrappers (`.module`); "logits" when it declares none.
    """
    while getattr(model, SEM_SEG_KIND_KEY, None) is None and isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    kind = getattr(model, SEM_SEG_KIND_KEY, None)
    if kind is None:
        return DEFAULT_SEM_SEG_KIND
    return check_sem_seg_kind(kind, f"{type(model).__name__}.{SEM_SEG_KIND_KEY}")


def output_sem_seg_kind(output: Mapping, default: Optional[str] = None, where: str = "model output") -> str:
    """
    The kind carried by one output dict (`output["sem_seg_kind"]`); without one, `default`
    (e.g. the model's declared kind), else "logits" (detectron2's contract).
    """
    kind = output.get(SEM_SEG_KIND_KEY, None)
    if kind is None:
        kind = DEFAULT_SEM_SEG_KIND if default is None else default
    return check_sem_seg_kind(kind, where)


def to_probabilities(scores: torch.Tensor, kind: str, dim: int = 0) -> torch.Tensor:
    """
    float32 per-pixel class probabilities from `scores` of the given kind, classes along `dim`:
    softmax of logits, probabilities unchanged, non-negative scores divided by their sum (a
    pixel whose scores are all 0 gets the uniform distribution).
    """
    check_sem_seg_kind(kind, "to_probabilities")
    scores = torch.as_tensor(scores).float()
    if kind == "logits":
        return scores.softmax(dim=dim)
    if kind == "probabilities":
        return scores
    if scores.numel() and float(scores.min()) < 0:
        raise ValueError(
            f"to_probabilities: sem_seg of kind 'scores' must be non-negative, got a minimum of "
            f"{float(scores.min()):.4g} (declare 'logits' for a model with signed scores)"
        )
    total = scores.sum(dim=dim, keepdim=True)
    empty = total <= _SCORE_SUM_EPS
    uniform = torch.full_like(scores, 1.0 / scores.shape[dim])
    return torch.where(empty, uniform, scores / total.clamp_min(_SCORE_SUM_EPS))
