"""
Test-time augmentation for semantic segmentation: multi-scale + horizontal flip with the
fusion rules of the methods, and sliding-window (tiled) inference for large images.

`SemanticSegmentorWithTTA` wraps any model that follows detectron2's semantic contract
(eval mode: `model([{"image": (C,H,W), "height": h, "width": w}, ...])` returns
`[{"sem_seg": (K, h, w) scores}, ...]`) and follows the same contract itself, so it can be
given to `inference_on_dataset` in place of the model. `maybe_wrap_with_tta(cfg, model)`
does that when the config asks for it. The wrapper reads the kind of the model's scores
(`sem_seg_kind`, wss_d2.inference.scores) and declares the kind of its own output.

One pass = (scale s, flip f). For each pass the image is resized to (round(H*s), round(W*s))
(bilinear in float32, no antialiasing; the model normalises inside, and resizing commutes
with that per-channel affine map, so this equals the original codes' resize of the
normalised image; TEST.TTA.ROUND_RESIZED_IMAGE rounds it back to uint8 instead), optionally
mirrored, and the model is asked for scores at that size. The scores are mirrored back,
resized to the image size (H, W) and, with SOFTMAX, brought to probabilities (softmax of
logits; a model's probabilities are kept; non-negative scores are divided by their sum). The
passes of one scale are fused by FLIP_FUSION, the scales by FUSION (with FLIP_FUSION unset
both use FUSION, which equals fusing all passes at once: "mean" = sum / number of passes).
The fused map is finally resized to the requested (height, width). Fusion keeps one running
map per level (the scale's and the image's), never the list of passes.

Sliding window: every pass image is cut into tiles (`tile_starts`: 0, stride, 2*stride, ...,
the last tile moved back to end at the border, as AGMM's tiler); tile scores (softmax
optional, TEST.SLIDING_WINDOW.SOFTMAX: a plain softmax whatever the model returns, so on
AGMM's probabilities it is the original's double softmax) are summed into a full-size map and divided by the
number of tiles covering each pixel. An image side shorter than the tile is not padded: that
side is processed whole (the tile is clipped to the image), so no pad value enters the model.

The methods' protocols (see README section "Test-time augmentation"):
  AGMM VOC (docs/agmm.md §6): the AGMM model returns probabilities (MODEL.AGMM.TEST_SOFTMAX), so
    SOFTMAX False (SOFTMAX True keeps them too; with a logits model: SOFTMAX, SOFTMAX_BEFORE_RESIZE),
    SCALES (0.5, 0.75, ..., 2.0), FLIP, FUSION mean, ALIGN_CORNERS True, SIZE_ROUNDING floor.
  AGMM Cityscapes: TTA off, SLIDING_WINDOW on, TILE 721, STRIDE 241, SOFTMAX (per tile, on the
    model's probabilities: the original's double softmax).
  WR38 (docs/sipe.md §8.2): SCALES (0.5..1.75), FLIP, SOFTMAX False (mean of logits).
  DeepLab MSC (docs/sipe.md §8.1): SCALES (0.5, 0.75, 1.0), no FLIP, FUSION max, SOFTMAX False.
  MCC VOC (final multi-scale + flip evaluation): SCALES (1.0, 1.5, 1.25), FLIP_FUSION sum, FUSION max, SOFTMAX False.
  SPML (classifier inference): SCALES (0.5..1.5), FLIP, SOFTMAX (after resize), FUSION mean.
"""
import logging
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable

from .scores import SEM_SEG_KIND_KEY, check_sem_seg_kind, model_sem_seg_kind, to_probabilities

__all__ = [
    "FUSION_RULES",
    "ScoreFusion",
    "SemanticSegmentorWithTTA",
    "maybe_wrap_with_tta",
    "resize_image",
    "resize_scores",
    "sliding_window_inference",
    "tile_starts",
]

logger = logging.getLogger(__name__)

# how score maps of several passes are combined: "mean" = sum / number of maps (AGMM, WR38,
# SPML), "sum" = plain sum (MCC's flip fusion), "max" = element-wise max (DeepLab MSC, MCC)
FUSION_RULES = ("mean", "sum", "max")
SIZE_ROUNDINGS = ("round", "floor")
MODEL_OUTPUT_SIZES = ("pass", "fusion")


class ScoreFusion:
    """
    Running fusion of equally shaped score maps by one of FUSION_RULES. It keeps a single
    float32 map (running sum or max), so memory does not grow with the number of passes.
    """

    def __init__(self, rule: str, key: str = "TEST.TTA.FUSION"):
        _check_choice(rule, FUSION_RULES, key)
        self.rule = rule
        self.value: Optional[torch.Tensor] = None
        self.count = 0

    def add(self, scores: torch.Tensor) -> None:
        if self.value is None:
            self.value = scores.to(torch.float32, copy=True)
        elif scores.shape != self.value.shape:
            raise ValueError(
                f"ScoreFusion: map of shape {tuple(scores.shape)} after maps of shape "
                f"{tuple(self.value.shape)}"
            )
        elif self.rule == "max":
            torch.maximum(self.value, scores.to(torch.float32), out=self.value)
        else:
            self.value.add_(scores.to(torch.float32))
        self.count += 1

    def result(self) -> torch.Tensor:
        if self.value is None:
            raise RuntimeError("ScoreFusion.result() before any map was added")
        return self.value / self.count if self.rule == "mean" else self.value


def tile_starts(length: int, tile: int, stride: int) -> List[int]:
    """
    Start offsets of the tiles along one axis: 0, stride, 2*stride, ..., with the last tile
    moved back so that it ends at the border; ceil((length - tile) / stride) + 1 tiles (AGMM's
    tiler, docs/agmm.md §6: 1024 with tile 721 and stride 241 gives [0, 241, 303]). An axis not
    longer than the tile gets one tile at 0 (clipped to the axis by the caller).
    """
    _check_tiling((tile,), (stride,))
    if length <= 0:
        raise ValueError(f"tile_starts: image side length must be positive, got {length}")
    if length <= tile:
        return [0]
    num_tiles = -(-(length - tile) // stride) + 1
    return [min(i * stride, length - tile) for i in range(num_tiles)]


def resize_image(
    image: torch.Tensor, size: Tuple[int, int], align_corners: bool, round_to_dtype: bool = False
) -> torch.Tensor:
    """
    Bilinear resize of a (C, H, W) image to `size` (h, w), no antialiasing (as cv2/torch
    bilinear, unlike PIL). Integer images (uint8) are interpolated in float32 and returned as
    float32, or with `round_to_dtype` rounded and clamped back to their dtype. The image is
    returned unchanged when the size matches.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    resized = F.interpolate(
        image[None].to(torch.float32), size=tuple(size), mode="bilinear",
        align_corners=align_corners,
    )[0]
    if image.dtype.is_floating_point:
        return resized.to(image.dtype)
    if not round_to_dtype:
        return resized
    info = torch.iinfo(image.dtype)
    return resized.round_().clamp_(info.min, info.max).to(image.dtype)


def resize_scores(scores: torch.Tensor, size: Tuple[int, int], align_corners: bool) -> torch.Tensor:
    """Bilinear resize of (K, h, w) scores to `size`; unchanged when the size matches."""
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(
        scores[None], size=tuple(size), mode="bilinear", align_corners=align_corners
    )[0]


def sliding_window_inference(
    model: nn.Module,
    image: torch.Tensor,
    tile: Union[int, Sequence[int]],
    stride: Union[int, Sequence[int]],
    num_classes: Optional[int] = None,
    softmax: bool = True,
    batch_size: int = 4,
    extra_inputs: Optional[Dict] = None,
    kind: Optional[str] = None,
) -> torch.Tensor:
    """
    Scores (K, H, W) of `model` (detectron2 semantic contract) on `image` (C, H, W) from
    overlapping tiles: per-tile scores (softmaxed over K if `softmax`, whatever kind the model
    returns) are summed into a full-size float32 map and divided by the number of tiles
    covering each pixel. The result has the model's kind, or is probabilities with `softmax`.

    Args:
        tile, stride: int or (h, w). Tile starts follow `tile_starts`; an image side shorter
            than the tile is processed whole along that side (no padding).
        num_classes: expected K; None takes it from the first tile.
        batch_size: tiles per model call (bounds memory).
        extra_inputs: extra keys put into every model input dict (e.g. "image_labels").
        kind: the model's declared sem_seg kind (None: read from the model).
    """
    tile_h, tile_w = _pair(tile, "TEST.SLIDING_WINDOW.TILE")
    stride_h, stride_w = _pair(stride, "TEST.SLIDING_WINDOW.STRIDE")
    _check_tiling((tile_h, tile_w), (stride_h, stride_w))
    if batch_size < 1:
        raise ValueError(f"TEST.SLIDING_WINDOW.BATCH must be >= 1, got {batch_size}")
    if image.dim() != 3:
        raise ValueError(
            f"sliding_window_inference: image must be (C, H, W), got {tuple(image.shape)}"
        )
    height, width = image.shape[-2:]
    row_starts = tile_starts(height, tile_h, stride_h)
    col_starts = tile_starts(width, tile_w, stride_w)
    crop_h, crop_w = min(tile_h, height), min(tile_w, width)
    corners = [(y, x) for y in row_starts for x in col_starts]

    total = None
    for first in range(0, len(corners), batch_size):
        chunk = corners[first : first + batch_size]
        inputs = [
            {**(extra_inputs or {}), "image": image[:, y : y + crop_h, x : x + crop_w],
             "height": crop_h, "width": crop_w}
            for y, x in chunk
        ]
        for (y, x), scores in zip(chunk, _run_model(model, inputs, num_classes, kind)):
            if softmax:
                scores = scores.float().softmax(dim=0)
            if total is None:
                num_classes = scores.shape[0]
                total = torch.zeros(
                    (num_classes, height, width), dtype=torch.float32, device=scores.device
                )
            total[:, y : y + crop_h, x : x + crop_w] += scores
    # tiles form a grid, so the coverage of pixel (y, x) is (#rows covering y) * (#cols covering x)
    row_cover = _coverage(height, row_starts, crop_h, total.device)
    col_cover = _coverage(width, col_starts, crop_w, total.device)
    return total / (row_cover[:, None] * col_cover[None, :])


class SemanticSegmentorWithTTA(nn.Module):
    """
    Multi-scale + flip (+ optional sliding window) inference around a semantic segmentor;
    same input/output contract as the wrapped model (only "sem_seg" is returned, with its
    "sem_seg_kind", also the attribute `sem_seg_kind`). Eval only.
    """

    @configurable
    def __init__(
        self,
        model: nn.Module,
        *,
        scales: Sequence[float] = (1.0,),
        flip: bool = True,
        fusion: str = "mean",
        flip_fusion: Optional[str] = None,
        softmax: bool = True,
        softmax_before_resize: bool = False,
        align_corners: bool = False,
        size_rounding: str = "round",
        batch_passes: bool = True,
        sliding_window: bool = False,
        tile: Sequence[int] = (721, 721),
        stride: Sequence[int] = (241, 241),
        tile_batch: int = 4,
        tile_softmax: bool = True,
        round_resized_image: bool = False,
        base_size: Sequence[int] = (),
        model_output_size: str = "pass",
    ):
        """
        Args:
            model: a semantic segmentor (detectron2 contract).
            scales: resize factors of the input image (TEST.TTA.SCALES).
            flip: also run the mirrored image at every scale (TEST.TTA.FLIP).
            fusion: FUSION_RULES rule across scales (TEST.TTA.FUSION).
            flip_fusion: rule across the flips of one scale; None: same as `fusion`.
            softmax: bring each pass to probabilities before fusing (TEST.TTA.SOFTMAX): softmax of
                logits, a model's probabilities as they are, scores divided by their sum
                (`to_probabilities` by the model's declared kind); False fuses the scores.
            softmax_before_resize: softmax at the pass size, then resize (AGMM); else resize,
                then softmax (SPML).
            align_corners: of every bilinear resize (image, scores, output).
            size_rounding: "round" (Python round, half to even) or "floor" (int(), AGMM/MCC)
                of H*s and W*s.
            batch_passes: one model call for the passes of one scale (they share a size);
                False: one call per pass (lower peak memory, same result).
            sliding_window, tile, stride, tile_batch, tile_softmax: `sliding_window_inference`
                on every pass image (TEST.SLIDING_WINDOW.*).
            round_resized_image: round each resized uint8 image back to uint8
                (TEST.TTA.ROUND_RESIZED_IMAGE); False passes it in float32.
            base_size: (h, w) the image is resized to before the scales are applied, whose
                passes are then resized straight to the output size (TEST.TTA.BASE_SIZE; MCC's
                448x448 validation and COCO protocol); () = the image's own size.
            model_output_size: "pass": the model returns scores at the pass size, which are then
                resized to the fusion size (two resizes for a model that upsamples inside); "fusion":
                the model is asked (its input's height/width) for scores directly at the fusion size,
                one resize from its own resolution, as MCC's original (TEST.TTA.MODEL_OUTPUT_SIZE;
                not with the sliding window, whose tiles need the pass size).
        """
        super().__init__()
        self.model = model
        self.model_kind = model_sem_seg_kind(model)
        self.scales = [float(s) for s in scales]
        if not self.scales:
            raise ValueError("TEST.TTA.SCALES is empty: give at least one scale, e.g. [1.0]")
        if any(not math.isfinite(s) or s <= 0 for s in self.scales):
            raise ValueError(f"TEST.TTA.SCALES must be positive, got {list(scales)}")
        _check_choice(fusion, FUSION_RULES, "TEST.TTA.FUSION")
        self.fusion = fusion
        self.flip_fusion = flip_fusion or fusion
        _check_choice(self.flip_fusion, FUSION_RULES, "TEST.TTA.FLIP_FUSION")
        _check_choice(size_rounding, SIZE_ROUNDINGS, "TEST.TTA.SIZE_ROUNDING")
        self.size_rounding = size_rounding
        self.flip = bool(flip)
        self.softmax = bool(softmax)
        self.softmax_before_resize = bool(softmax_before_resize)
        self.align_corners = bool(align_corners)
        self.batch_passes = bool(batch_passes)
        self.sliding_window = bool(sliding_window)
        self.tile = _pair(tile, "TEST.SLIDING_WINDOW.TILE")
        self.stride = _pair(stride, "TEST.SLIDING_WINDOW.STRIDE")
        _check_tiling(self.tile, self.stride)
        if int(tile_batch) < 1:
            raise ValueError(f"TEST.SLIDING_WINDOW.BATCH must be >= 1, got {tile_batch}")
        self.tile_batch = int(tile_batch)
        self.tile_softmax = bool(tile_softmax)
        self.round_resized_image = bool(round_resized_image)
        self.base_size = _pair(base_size, "TEST.TTA.BASE_SIZE") if len(base_size) else None
        _check_choice(model_output_size, MODEL_OUTPUT_SIZES, "TEST.TTA.MODEL_OUTPUT_SIZE")
        if model_output_size == "fusion" and self.sliding_window:
            raise ValueError('TEST.TTA.MODEL_OUTPUT_SIZE "fusion" does not combine with TEST.SLIDING_WINDOW (tiles need the pass size)')
        self.model_output_size = model_output_size
        if self.double_softmax:
            logger.info(
                "TEST.SLIDING_WINDOW.SOFTMAX on a model that returns probabilities: every tile's "
                "probabilities are softmaxed again (the original AGMM's double softmax)"
            )

    @property
    def double_softmax(self) -> bool:
        """The tiler softmaxes scores that already are probabilities (AGMM Cityscapes, faithful)."""
        return self.sliding_window and self.tile_softmax and self.model_kind == "probabilities"

    @property
    def sem_seg_kind(self) -> str:
        """The kind of the fused `sem_seg` (wss_d2.inference.scores)."""
        kind = self.model_kind
        if self.sliding_window and self.tile_softmax:
            kind = "probabilities"
        if self.softmax:
            kind = "probabilities"
        # a mean or a resize of distributions is one; a sum or max of several is not
        if kind == "probabilities" and (
            (self.flip and self.flip_fusion != "mean") or (len(self.scales) > 1 and self.fusion != "mean")
        ):
            kind = "scores"
        return kind

    @classmethod
    def from_config(cls, cfg, model):
        """
        Reads TEST.TTA.* and TEST.SLIDING_WINDOW.* (all defined by `add_wss_config`). With
        TEST.TTA.ENABLED False one pass runs (scale 1, no flip, no per-pass softmax), so the
        wrapper only does the sliding window.
        """
        tta = bool(cfg.TEST.TTA.ENABLED)
        return {
            "model": model,
            "scales": list(cfg.TEST.TTA.SCALES) if tta else [1.0],
            "flip": bool(cfg.TEST.TTA.FLIP) and tta,
            "fusion": cfg.TEST.TTA.FUSION,
            "flip_fusion": cfg.TEST.TTA.FLIP_FUSION or None,
            "softmax": bool(cfg.TEST.TTA.SOFTMAX) and tta,
            "softmax_before_resize": cfg.TEST.TTA.SOFTMAX_BEFORE_RESIZE,
            "align_corners": cfg.TEST.TTA.ALIGN_CORNERS,
            "size_rounding": cfg.TEST.TTA.SIZE_ROUNDING,
            "batch_passes": cfg.TEST.TTA.BATCH_PASSES,
            "sliding_window": cfg.TEST.SLIDING_WINDOW.ENABLED,
            "tile": cfg.TEST.SLIDING_WINDOW.TILE,
            "stride": cfg.TEST.SLIDING_WINDOW.STRIDE,
            "tile_batch": cfg.TEST.SLIDING_WINDOW.BATCH,
            "tile_softmax": cfg.TEST.SLIDING_WINDOW.SOFTMAX,
            "round_resized_image": cfg.TEST.TTA.ROUND_RESIZED_IMAGE,
            "base_size": tuple(cfg.TEST.TTA.BASE_SIZE),
            "model_output_size": cfg.TEST.TTA.MODEL_OUTPUT_SIZE,
        }

    def forward(self, batched_inputs: List[Dict]) -> List[Dict[str, torch.Tensor]]:
        if self.training:
            raise RuntimeError(
                "SemanticSegmentorWithTTA is inference only: call .eval() (train the wrapped model)"
            )
        kind = self.sem_seg_kind
        with torch.no_grad():
            return [{"sem_seg": self._inference_one(inputs), SEM_SEG_KIND_KEY: kind} for inputs in batched_inputs]

    def scaled_size(self, height: int, width: int, scale: float) -> Tuple[int, int]:
        """The pass size for one scale (at least 1 pixel per side)."""
        to_int = round if self.size_rounding == "round" else math.floor
        return max(1, int(to_int(height * scale))), max(1, int(to_int(width * scale)))

    def _inference_one(self, inputs: Dict) -> torch.Tensor:
        image = inputs["image"]
        if image.dim() != 3:
            raise ValueError(
                f"SemanticSegmentorWithTTA: 'image' must be (C, H, W), got {tuple(image.shape)}"
            )
        height, width = image.shape[-2:]
        output_size = (int(inputs.get("height", height)), int(inputs.get("width", width)))
        target = (height, width)  # where each pass's scores go before fusion
        if self.base_size is not None:
            image = resize_image(image, self.base_size, self.align_corners, self.round_resized_image)
            (height, width), target = self.base_size, output_size
        extra = _passthrough_inputs(inputs)
        fused = ScoreFusion(self.fusion, "TEST.TTA.FUSION")
        for scale in self.scales:
            size = self.scaled_size(height, width, scale)
            scaled = resize_image(image, size, self.align_corners, self.round_resized_image)
            per_scale = ScoreFusion(self.flip_fusion, "TEST.TTA.FLIP_FUSION")
            for scores, flipped in self._passes(scaled, extra, target):
                if flipped:
                    scores = scores.flip(-1)
                per_scale.add(self._to_image_size(scores, target))
            fused.add(per_scale.result())
        return resize_scores(fused.result(), output_size, self.align_corners)

    def _passes(self, scaled: torch.Tensor, extra: Dict, target: Tuple[int, int]):
        """Yields (scores at the pass size, or at `target` with MODEL_OUTPUT_SIZE "fusion", flipped) for
        the passes of one scale."""
        flips = (False, True) if self.flip else (False,)
        images = [scaled.flip(-1) if flipped else scaled for flipped in flips]
        if self.sliding_window:
            for pass_image, flipped in zip(images, flips):
                yield sliding_window_inference(
                    self.model, pass_image, self.tile, self.stride, softmax=self.tile_softmax,
                    batch_size=self.tile_batch, extra_inputs=extra, kind=self.model_kind,
                ), flipped
            return
        size = {"height": scaled.shape[-2], "width": scaled.shape[-1]}
        if self.model_output_size == "fusion":
            size = {"height": target[0], "width": target[1]}
        passes = list(zip(images, flips))
        groups = [passes] if self.batch_passes else [[one] for one in passes]
        for group in groups:
            outputs = _run_model(
                self.model, [{**extra, "image": im, **size} for im, _ in group], kind=self.model_kind
            )
            yield from zip(outputs, [flipped for _, flipped in group])

    def _to_image_size(self, scores: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        scores = scores.float()
        # the pass's kind: the tiler's softmax made probabilities of whatever the model returned
        kind = "probabilities" if self.sliding_window and self.tile_softmax else self.model_kind
        if self.softmax and self.softmax_before_resize:
            scores = to_probabilities(scores, kind)
        scores = resize_scores(scores, size, self.align_corners)
        if self.softmax and not self.softmax_before_resize:
            scores = to_probabilities(scores, kind)
        return scores


def maybe_wrap_with_tta(cfg, model: nn.Module) -> nn.Module:
    """`SemanticSegmentorWithTTA(cfg, model)` if TEST.TTA or TEST.SLIDING_WINDOW is enabled or
    TEST.TTA.BASE_SIZE is set (applied with TTA off too: one pass at that size)."""
    if cfg.TEST.TTA.ENABLED or cfg.TEST.SLIDING_WINDOW.ENABLED or len(cfg.TEST.TTA.BASE_SIZE):
        return SemanticSegmentorWithTTA(cfg, model)
    return model


def _run_model(
    model, inputs: List[Dict], num_classes: Optional[int] = None, kind: Optional[str] = None
) -> List[torch.Tensor]:
    """
    Calls the model and checks that it returned (K, height, width) scores per input, and that
    an output that names its kind names `kind` (the model's declared one).
    """
    outputs = model(inputs)
    if not isinstance(outputs, (list, tuple)) or len(outputs) != len(inputs):
        raise ValueError(
            f"the wrapped model must return a list of {len(inputs)} dicts (detectron2's semantic "
            f"contract), got {type(outputs).__name__}"
        )
    scores = []
    for inp, out in zip(inputs, outputs):
        if not isinstance(out, dict) or "sem_seg" not in out:
            raise ValueError("the wrapped model's outputs need a 'sem_seg' entry")
        sem_seg = out["sem_seg"]
        declared = kind or model_sem_seg_kind(model)
        stated = out.get(SEM_SEG_KIND_KEY, declared)
        if stated != declared:
            check_sem_seg_kind(stated, f"{type(model).__name__} output")
            raise ValueError(
                f"{type(model).__name__} declares sem_seg_kind {declared!r} but its output says {stated!r}: "
                "set the model's sem_seg_kind attribute to what its sem_seg holds"
            )
        expected = (inp["height"], inp["width"])
        if (
            sem_seg.dim() != 3
            or tuple(sem_seg.shape[-2:]) != expected
            or (num_classes is not None and sem_seg.shape[0] != num_classes)
        ):
            k = num_classes if num_classes is not None else "K"
            raise ValueError(
                f"the wrapped model returned sem_seg of shape {tuple(sem_seg.shape)} for an input "
                f"with height, width = {expected}; expected ({k}, {expected[0]}, {expected[1]})"
            )
        num_classes = sem_seg.shape[0]
        scores.append(sem_seg)
    return scores


def _passthrough_inputs(inputs: Dict) -> Dict:
    """
    Keys of an input dict that stay valid for a resized/flipped/tiled image: everything but
    "image", "height", "width", tensors with 2+ dims (label maps, CAMs, points) and objects
    such as Instances. Ids, file names and 1-D tensors (image-level labels) are kept.
    """
    kept = {}
    for key, value in inputs.items():
        if key in ("image", "height", "width"):
            continue
        if isinstance(value, torch.Tensor):
            if value.dim() <= 1:
                kept[key] = value
        elif value is None or isinstance(value, (str, int, float, bool, list, tuple)):
            kept[key] = value
    return kept


def _coverage(length: int, starts: Sequence[int], extent: int, device) -> torch.Tensor:
    cover = torch.zeros(length, dtype=torch.float32, device=device)
    for start in starts:
        cover[start : start + extent] += 1
    return cover


def _pair(value, key: str) -> Tuple[int, int]:
    values = [value, value] if isinstance(value, (int, float)) else list(value)
    if len(values) != 2 or any(int(v) != v for v in values):
        raise ValueError(f"{key} must be one integer or (height, width) integers, got {value!r}")
    return int(values[0]), int(values[1])


def _check_tiling(tile: Sequence[int], stride: Sequence[int]) -> None:
    if any(t < 1 for t in tile):
        raise ValueError(f"TEST.SLIDING_WINDOW.TILE must be positive, got {list(tile)}")
    if any(s < 1 for s in stride):
        raise ValueError(f"TEST.SLIDING_WINDOW.STRIDE must be positive, got {list(stride)}")
    if any(s > t for s, t in zip(stride, tile)):
        raise ValueError(
            f"TEST.SLIDING_WINDOW.STRIDE {list(stride)} is larger than TEST.SLIDING_WINDOW.TILE "
            f"{list(tile)}: pixels between tiles would get no score"
        )


def _check_choice(value, choices: Sequence[str], key: str) -> None:
    if value not in choices:
        raise ValueError(f"{key} = {value!r} is not one of {list(choices)}")

