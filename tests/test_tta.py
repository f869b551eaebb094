"""Test-time augmentation (wss_d2.inference.tta) on toy models with hand-computed outputs."""
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F


from wss_d2 import get_wss_cfg

from wss_d2.inference.tta import (
    SemanticSegmentorWithTTA,
    maybe_wrap_with_tta,
    sliding_window_inference,
    tile_starts,
)


class ContractModel(nn.Module):
    """
    A toy net in detectron2's semantic contract: `net(float image (1,C,h,w), (h, w))` gives
    (1, K, h, w) scores, resized bilinearly to the requested (height, width). Records the
    image sizes of every call.
    """

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.calls = []

    def forward(self, batched_inputs):
        self.calls.append([tuple(x["image"].shape[-2:]) for x in batched_inputs])
        outputs = []
        for x in batched_inputs:
            image = x["image"].float()[None]
            scores = self.net(image)
            scores = F.interpolate(scores, size=(x["height"], x["width"]), mode="bilinear")
            outputs.append({"sem_seg": scores[0]})
        return outputs


def pixel_classifier(num_classes=4, seed=0):
    """Per-pixel colour classifier (1x1 conv): flip-equivariant and fully convolutional."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, num_classes, 1)
    nn.init.normal_(conv.weight, std=0.05)
    return ContractModel(conv)


def random_image(height, width, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)


def tta(model, **kwargs):
    return SemanticSegmentorWithTTA(model, **kwargs).eval()


def run(wrapper, image, height=None, width=None):
    height = image.shape[1] if height is None else height
    width = image.shape[2] if width is None else width
    return wrapper([{"image": image, "height": height, "width": width}])[0]["sem_seg"]


class SizeConstant(nn.Module):
    """Scores = (h/10, -h/10, 0) everywhere, h = the input height: a known value per scale."""

    def forward(self, image):
        value = image.shape[-2] / 10.0
        base = torch.tensor([value, -value, 0.0])
        return base[None, :, None, None].expand(1, 3, *image.shape[-2:]).clone()


class ContentAndPosition(nn.Module):
    """
    Channel 0 = the image's first channel (content: follows a flip), channel 1 = a * u with
    u = x / (w - 1) the normalised column (position: does not follow a flip) and a = h / 10.
    """

    def forward(self, image):
        h, w = image.shape[-2:]
        u = torch.linspace(0, 1, w).expand(h, w)
        return torch.stack([image[0, 0], (h / 10.0) * u])[None]


# ---------------------------------------------------------------- (a) flip equivariance


def test_flip_symmetric_model_gives_identical_output_with_and_without_flip():
    model, image = pixel_classifier(), random_image(20, 30)
    for softmax in (True, False):
        with_flip = run(tta(model, scales=[1.0], flip=True, softmax=softmax), image)
        without_flip = run(tta(model, scales=[1.0], flip=False, softmax=softmax), image)
        assert torch.equal(with_flip, without_flip)
        # and it is the plain model output (softmaxed if asked)
        plain = model([{"image": image, "height": 20, "width": 30}])[0]["sem_seg"]
        assert torch.equal(without_flip, plain.softmax(0) if softmax else plain)
    scales = [0.5, 0.75, 1.25]
    with_flip = run(tta(model, scales=scales, flip=True), image)
    without_flip = run(tta(model, scales=scales, flip=False), image)
    assert torch.allclose(with_flip, without_flip, atol=1e-6)


def test_position_dependent_model_is_flipped_back():
    """Content follows the flip (fused = the image); the position ramp u fuses to a constant."""
    height, width = 10, 16
    ramp = (torch.arange(width) * 10).to(torch.uint8).expand(3, height, width).contiguous()
    model = ContractModel(ContentAndPosition())
    a = height / 10.0
    u = torch.linspace(0, 1, width).expand(height, width)

    out = run(tta(model, scales=[1.0], flip=True, softmax=False, fusion="mean"), ramp)
    assert torch.allclose(out[0], ramp[0].float(), atol=1e-5)  # without flip-back: constant 75
    assert torch.allclose(out[1], torch.full((height, width), a / 2), atol=1e-6)  # (u + 1 - u)/2

    out = run(tta(model, scales=[1.0], flip=True, softmax=False, fusion="max"), ramp)
    assert torch.allclose(out[0], ramp[0].float(), atol=1e-5)
    assert torch.allclose(out[1], a * torch.maximum(u, 1 - u), atol=1e-6)
    # flip off: the ramp itself
    out = run(tta(model, scales=[1.0], flip=False, softmax=False), ramp)
    assert torch.allclose(out[1], a * u, atol=1e-6)


# ---------------------------------------------------------------- (b) scale fusion


def test_scale_fusion_mean_max_sum_logits():
    """Heights 10, 20, 30 (scales 0.5, 1, 1.5 of 20) give channel-0 scores 1, 2, 3."""
    model, image = ContractModel(SizeConstant()), random_image(20, 30)
    scales = [0.5, 1.0, 1.5]
    expected = {
        "mean": [2.0, -2.0, 0.0],  # (1+1+2+2+3+3)/6
        "max": [3.0, -1.0, 0.0],
        "sum": [12.0, -12.0, 0.0],
    }
    for fusion, values in expected.items():
        out = run(tta(model, scales=scales, flip=True, fusion=fusion, softmax=False), image)
        assert out.shape == (3, 20, 30)
        assert torch.allclose(out, torch.tensor(values)[:, None, None].expand(3, 20, 30), atol=1e-6)


def test_scale_fusion_with_softmax():
    model, image = ContractModel(SizeConstant()), random_image(20, 30)

    def softmax(v):  # softmax of (v, -v, 0) by hand
        z = math.exp(v) + math.exp(-v) + 1.0
        return [math.exp(v) / z, math.exp(-v) / z, 1.0 / z]

    per_scale = [softmax(v) for v in (1.0, 2.0, 3.0)]
    mean = [sum(p[k] for p in per_scale) / 3 for k in range(3)]
    maximum = [max(p[k] for p in per_scale) for k in range(3)]
    for fusion, values in (("mean", mean), ("max", maximum)):
        for before_resize in (False, True):
            out = run(
                tta(model, scales=[0.5, 1.0, 1.5], fusion=fusion, softmax=True,
                    softmax_before_resize=before_resize),
                image,
            )
            assert torch.allclose(out[:, 7, 11], torch.tensor(values), atol=1e-6), fusion
    # mean of probabilities differs from the probabilities of the mean logit (2.0)
    assert not math.isclose(mean[0], softmax(2.0)[0], rel_tol=1e-3)


def test_softmax_before_or_after_resize():
    """Scores (0, 4) / (0, 0) on 2 columns, resized to 3 (align_corners): the middle column."""

    class TwoColumns(nn.Module):
        def forward(self, image):
            u = torch.linspace(0, 1, image.shape[-1]).expand(image.shape[-2:])
            return torch.stack([4 * u, torch.zeros_like(u)])[None]

    model, image = ContractModel(TwoColumns()), random_image(1, 3)
    common = dict(scales=[2 / 3], flip=False, softmax=True, align_corners=True)
    after = run(tta(model, softmax_before_resize=False, **common), image)
    assert model.calls == [[(1, 2)]]
    assert math.isclose(after[0, 0, 1].item(), math.exp(2) / (math.exp(2) + 1), rel_tol=1e-6)
    before = run(tta(model, softmax_before_resize=True, **common), image)
    expected = (0.5 + math.exp(4) / (math.exp(4) + 1)) / 2
    assert math.isclose(before[0, 0, 1].item(), expected, rel_tol=1e-6)


def test_flip_and_scale_fusion_rules_compose():
    """MCC-style: flips fused by FLIP_FUSION, then scales by FUSION (align_corners: exact ramps)."""
    model = ContractModel(ContentAndPosition())
    image = random_image(20, 30)
    u = torch.linspace(0, 1, 30).expand(20, 30)
    common = dict(scales=[0.5, 1.0, 1.5], flip=True, softmax=False, align_corners=True)
    # per scale a * (u + 1 - u) = a in {1, 2, 3}; max over scales = 3
    out = run(tta(model, flip_fusion="sum", fusion="max", **common), image)
    assert torch.allclose(out[1], torch.full((20, 30), 3.0), atol=1e-5)
    # per scale a * max(u, 1 - u); summed over scales: 6 * max(u, 1 - u)
    out = run(tta(model, flip_fusion="max", fusion="sum", **common), image)
    assert torch.allclose(out[1], 6 * torch.maximum(u, 1 - u), atol=1e-5)
    # one rule for all passes: mean over 6 passes = (1 + 2 + 3) / 3 * 0.5
    out = run(tta(model, fusion="mean", **common), image)
    assert torch.allclose(out[1], torch.full((20, 30), 1.0), atol=1e-5)


def test_pass_sizes_and_rounding():
    model, image = ContractModel(SizeConstant()), random_image(19, 30)
    run(tta(model, scales=[1.25, 0.5], flip=True, size_rounding="round"), image)
    assert model.calls == [[(24, 38), (24, 38)], [(10, 15), (10, 15)]]  # 23.75 -> 24, 9.5 -> 10
    model.calls.clear()
    run(tta(model, scales=[1.25, 0.5], flip=False, size_rounding="floor"), image)
    assert model.calls == [[(23, 37)], [(9, 15)]]


# ---------------------------------------------------------------- (c) sliding window


def test_tile_starts_reproduce_agmm():
    assert tile_starts(1024, 721, 241) == [0, 241, 303]
    assert tile_starts(2048, 721, 241) == [0, 241, 482, 723, 964, 1205, 1327]
    assert math.ceil(721 / 3) == 241
    assert tile_starts(50, 32, 11) == [0, 11, 18]
    assert tile_starts(70, 32, 11) == [0, 11, 22, 33, 38]
    assert tile_starts(32, 32, 11) == [0]
    assert tile_starts(20, 32, 11) == [0]
    assert tile_starts(64, 32, 32) == [0, 32]


@pytest.mark.parametrize("softmax", [True, False])
def test_sliding_window_equals_whole_image_for_fully_convolutional_model(softmax):
    model, image = pixel_classifier(num_classes=5), random_image(50, 70)
    whole = model([{"image": image, "height": 50, "width": 70}])[0]["sem_seg"]
    whole = whole.softmax(0) if softmax else whole
    model.calls.clear()
    tiled = sliding_window_inference(model, image, [32, 32], [11, 11], 5, softmax=softmax)
    assert tiled.shape == (5, 50, 70)
    assert torch.allclose(tiled, whole, atol=1e-5)
    # 3 x 5 tiles of 32 x 32, at most 4 per model call
    assert [len(call) for call in model.calls] == [4, 4, 4, 3]
    assert all(size == (32, 32) for call in model.calls for size in call)


def test_sliding_window_averages_overlaps():
    """A model whose tile scores are the tile's column offset: the average is hand-computed."""

    class TileOffset(nn.Module):
        def forward(self, batched_inputs):  # image value at the tile's corner = its column
            return [
                {"sem_seg": torch.full((1, x["height"], x["width"]), float(x["image"][0, 0, 0]))}
                for x in batched_inputs
            ]

    columns = torch.arange(10, dtype=torch.uint8).expand(1, 4, 10).contiguous()
    out = sliding_window_inference(TileOffset(), columns, (4, 6), (4, 3), softmax=False)
    # column starts [0, 3, 4]: tiles cover 0-5 (score 0), 3-8 (score 3), 4-9 (score 4)
    expected = torch.tensor([0, 0, 0, 1.5, 7 / 3, 7 / 3, 3.5, 3.5, 3.5, 4.0])
    assert torch.allclose(out[0], expected.expand(4, 10), atol=1e-6)


def test_wrapper_sliding_window_with_scales_and_flip():
    """
    Each scaled/flipped image is tiled; with tile logits averaged (SPML) and softmax per pass,
    a 1x1-conv model gives the plain TTA result.
    """
    model, image = pixel_classifier(), random_image(40, 52)
    plain = run(tta(model, scales=[0.75, 1.0], flip=True), image)
    tiled_model = tta(model, scales=[0.75, 1.0], flip=True, sliding_window=True, tile=[24, 32],
                      stride=[10, 10], tile_batch=3, tile_softmax=False)
    model.calls.clear()
    tiled = run(tiled_model, image)
    assert torch.allclose(tiled, plain, atol=1e-5)
    assert {size for call in model.calls for size in call} == {(24, 32)}
    assert max(len(call) for call in model.calls) == 3
    # and an image side shorter than the tile is processed whole
    small = random_image(20, 52)
    assert torch.allclose(run(tiled_model, small), run(tta(model, scales=[0.75, 1.0]), small),
                          atol=1e-5)


# ---------------------------------------------------------------- (d) sizes and batching


def test_output_at_requested_size():
    model, image = ContractModel(SizeConstant()), random_image(20, 30)
    out = run(tta(model, scales=[0.5, 1.0], softmax=False), image, height=40, width=61)
    assert out.shape == (3, 40, 61)
    assert torch.allclose(out[0], torch.full((40, 61), 1.5), atol=1e-6)  # mean of 1 and 2
    model = pixel_classifier()
    out = run(tta(model, scales=[1.0], flip=False, softmax=False), image, height=40, width=61)
    plain = model([{"image": image, "height": 20, "width": 30}])[0]["sem_seg"]
    assert torch.allclose(out, F.interpolate(plain[None], size=(40, 61), mode="bilinear")[0])


def test_batched_passes_equal_one_by_one():
    model, image = pixel_classifier(), random_image(21, 33)
    kwargs = dict(scales=[0.5, 1.0, 1.5], flip=True, fusion="max")
    batched = run(tta(model, batch_passes=True, **kwargs), image)
    assert [len(call) for call in model.calls] == [2, 2, 2]
    model.calls.clear()
    single = run(tta(model, batch_passes=False, **kwargs), image)
    assert [len(call) for call in model.calls] == [1] * 6
    assert torch.equal(batched, single)


def test_from_config_defaults_and_values():
    cfg = get_wss_cfg()
    wrapper = SemanticSegmentorWithTTA(cfg, pixel_classifier())
    assert (wrapper.scales, wrapper.flip, wrapper.softmax, wrapper.sliding_window) == (
        [1.0], False, False, False)  # TTA disabled: one plain pass
    assert wrapper.tile == (721, 721) and wrapper.stride == (241, 241) and wrapper.tile_batch == 4
    assert maybe_wrap_with_tta(cfg, wrapper.model) is wrapper.model
    cfg.merge_from_list(["TEST.TTA.ENABLED", True, "TEST.TTA.SCALES", [0.5, 2.0], "TEST.TTA.FUSION", "max",
                         "TEST.TTA.ALIGN_CORNERS", True, "TEST.TTA.FLIP_FUSION", "sum"])
    wrapper = maybe_wrap_with_tta(cfg, pixel_classifier())
    assert isinstance(wrapper, SemanticSegmentorWithTTA)
    assert (wrapper.scales, wrapper.flip, wrapper.fusion, wrapper.flip_fusion, wrapper.softmax,
            wrapper.align_corners) == ([0.5, 2.0], True, "max", "sum", True, True)


def test_inputs_pass_through_and_training_mode_refused():
    seen = []

    class Recorder(nn.Module):
        def forward(self, batched_inputs):
            seen.extend(sorted(x.keys()) for x in batched_inputs)
            return [{"sem_seg": torch.zeros(2, x["height"], x["width"])} for x in batched_inputs]

    wrapper = tta(Recorder(), scales=[1.0], flip=False)
    image = random_image(8, 8)
    wrapper([{"image": image, "height": 8, "width": 8, "file_name": "a.jpg",
              "image_labels": torch.tensor([1, 0]), "sem_seg": torch.zeros(8, 8)}])
    assert seen == [["file_name", "height", "image", "image_labels", "width"]]
    with pytest.raises(RuntimeError, match="eval"):
        wrapper.train()([{"image": image, "height": 8, "width": 8}])


# ---------------------------------------------------------------- (e) bad configuration


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(fusion="median"), r"TEST.TTA.FUSION = 'median'"),
        (dict(flip_fusion="median"), r"TEST.TTA.FLIP_FUSION = 'median'"),
        (dict(scales=[]), r"TEST.TTA.SCALES is empty"),
        (dict(scales=[1.0, -0.5]), r"TEST.TTA.SCALES must be positive, got \[1.0, -0.5\]"),
        (dict(size_rounding="ceil"), r"TEST.TTA.SIZE_ROUNDING = 'ceil'"),
        (dict(tile=[32, 32], stride=[11, 40]),
         r"TEST.SLIDING_WINDOW.STRIDE \[11, 40\] is larger than "
         r"TEST.SLIDING_WINDOW.TILE \[32, 32\]"),
        (dict(tile=[0, 32]), r"TEST.SLIDING_WINDOW.TILE must be positive"),
        (dict(tile=[1, 2, 3]), r"TEST.SLIDING_WINDOW.TILE must be one integer or"),
        (dict(tile_batch=0), r"TEST.SLIDING_WINDOW.BATCH must be >= 1, got 0"),
    ],
)
def test_bad_settings_raise_naming_key_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SemanticSegmentorWithTTA(pixel_classifier(), **kwargs)


def test_bad_config_file_values_raise():
    cfg = get_wss_cfg(opts=["TEST.TTA.ENABLED", True, "TEST.TTA.FUSION", "median"])
    with pytest.raises(ValueError, match=r"TEST.TTA.FUSION = 'median'"):
        SemanticSegmentorWithTTA(cfg, pixel_classifier())
    cfg = get_wss_cfg(opts=["TEST.SLIDING_WINDOW.ENABLED", True, "TEST.SLIDING_WINDOW.TILE", [721, 721],
                            "TEST.SLIDING_WINDOW.STRIDE", [800, 241]])
    with pytest.raises(ValueError, match=r"TEST.SLIDING_WINDOW.STRIDE \[800, 241\]"):
        maybe_wrap_with_tta(cfg, pixel_classifier())
    with pytest.raises(ValueError, match=r"STRIDE \[40\] is larger than .*TILE \[32\]"):
        tile_starts(100, 32, 40)


def test_model_returning_wrong_size_raises():
    class WrongSize(nn.Module):
        def forward(self, batched_inputs):
            return [{"sem_seg": torch.zeros(2, 5, 5)} for _ in batched_inputs]

    with pytest.raises(ValueError, match=r"shape \(2, 5, 5\) .* height, width = \(8, 9\)"):
        run(tta(WrongSize(), scales=[1.0]), random_image(8, 9))


# ---------------------------------------------------------------- (f) declared score kinds


class ProbabilityModel(ContractModel):
    """A ContractModel that returns (and declares) probabilities, as AGMM does by default."""

    sem_seg_kind = "probabilities"

    def forward(self, batched_inputs):
        outputs = super().forward(batched_inputs)
        return [{"sem_seg": out["sem_seg"].softmax(0), "sem_seg_kind": "probabilities"} for out in outputs]


def probability_model(num_classes=4, seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, num_classes, 1)
    nn.init.normal_(conv.weight, std=0.05)
    return ProbabilityModel(conv)


def test_tta_softmax_does_not_softmax_a_model_s_probabilities():
    """TEST.TTA.SOFTMAX brings each pass to probabilities: a probability model's maps are
    averaged as they are (a second softmax would flatten them towards 1/K)."""
    model, image = probability_model(), random_image(21, 33)
    common = dict(scales=[0.5, 1.0, 1.5], flip=True, fusion="mean")
    fused = run(tta(model, softmax=False, **common), image)
    for before_resize in (False, True):
        out = run(tta(model, softmax=True, softmax_before_resize=before_resize, **common), image)
        assert torch.allclose(out, fused, atol=1e-6)
    plain = model([{"image": image, "height": 21, "width": 33}])[0]["sem_seg"]
    assert torch.equal(run(tta(model, scales=[1.0], flip=False, softmax=True), image), plain)


def test_sliding_window_softmax_of_probabilities_is_the_explicit_double_softmax():
    """TEST.SLIDING_WINDOW.SOFTMAX softmaxes every tile whatever the model returns: on AGMM's
    probabilities that is the original's double softmax (kept on purpose, README)."""
    model, image = probability_model(num_classes=5), random_image(50, 70)
    whole = model([{"image": image, "height": 50, "width": 70}])[0]["sem_seg"]
    tiled = sliding_window_inference(model, image, [32, 32], [11, 11], 5, softmax=True)
    assert torch.allclose(tiled, whole.softmax(0), atol=1e-5)
    wrapper = tta(model, scales=[1.0], flip=False, softmax=False, sliding_window=True, tile=[32, 32],
                  stride=[11, 11], tile_softmax=True)
    assert wrapper.double_softmax and wrapper.sem_seg_kind == "probabilities"
    assert not tta(pixel_classifier(), sliding_window=True, tile_softmax=True).double_softmax


@pytest.mark.parametrize(
    "model_kind, kwargs, kind",
    [
        ("logits", dict(softmax=True), "probabilities"),
        ("logits", dict(softmax=False), "logits"),
        ("logits", dict(softmax=False, fusion="max"), "logits"),
        ("probabilities", dict(softmax=False), "probabilities"),  # mean of distributions
        ("probabilities", dict(softmax=True, fusion="max"), "scores"),  # max: not normalised
        ("probabilities", dict(softmax=True, flip_fusion="sum"), "scores"),
        ("probabilities", dict(softmax=True, scales=[1.0], flip=False, fusion="max"), "probabilities"),
        ("scores", dict(softmax=False), "scores"),
        ("scores", dict(softmax=True), "probabilities"),
        ("logits", dict(softmax=False, sliding_window=True, tile_softmax=True), "probabilities"),
        ("logits", dict(softmax=False, sliding_window=True, tile_softmax=False), "logits"),
    ],
)
def test_tta_declares_the_kind_of_its_output(model_kind, kwargs, kind):
    model = pixel_classifier()
    model.sem_seg_kind = model_kind
    kwargs = {"scales": [0.5, 1.0], **kwargs}
    if kwargs.get("sliding_window"):
        kwargs.update(tile=[8, 8], stride=[4, 4])
    wrapper = tta(model, **kwargs)
    assert wrapper.sem_seg_kind == kind
    if model_kind == "logits":  # the model's outputs carry no kind: detectron2's logits
        output = wrapper([{"image": random_image(12, 14), "height": 12, "width": 14}])[0]
        assert output["sem_seg_kind"] == kind


def test_model_output_kind_must_match_its_declaration():
    model = probability_model()
    model.sem_seg_kind = "logits"
    with pytest.raises(ValueError, match=r"declares sem_seg_kind 'logits' but its output says 'probabilities'"):
        run(tta(model, scales=[1.0]), random_image(8, 8))


# ---------------------------------------------------------------- (g) float image resize


PIXEL_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
PIXEL_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


class NormalisingNet(nn.Module):
    """Normalises the raw image with pixel mean/std inside (as the real models), then a 3x3 conv."""

    def __init__(self, num_classes=5, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)
        nn.init.normal_(self.conv.weight, std=2.0)

    def forward(self, image):
        return self.conv((image - PIXEL_MEAN) / PIXEL_STD)


def test_multi_scale_pass_equals_the_float_resized_reference():
    """
    AGMM, SIPE and MCC resize the normalised float image. The model normalises inside its
    forward, so TTA resizes the raw image in float, without rounding: bilinear weights sum to
    1, so resizing commutes with the per-channel affine normalisation.
    """
    image = random_image(37, 45)
    net = NormalisingNet()
    scales, height, width = [0.5, 0.75, 1.25, 1.6], 37, 45
    wrapper = tta(ContractModel(net), scales=scales, flip=True, softmax=True, softmax_before_resize=True,
                  align_corners=True, size_rounding="floor")
    out = run(wrapper, image)

    normalised = (image.float() - PIXEL_MEAN) / PIXEL_STD
    expected = torch.zeros(5, height, width)
    for scale in scales:
        size = (int(height * scale), int(width * scale))
        resized = F.interpolate(normalised[None], size=size, mode="bilinear", align_corners=True)
        # the reasoning: resize(normalise(x)) == normalise(resize(x)) in float
        raw = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=True)
        assert torch.allclose(resized, (raw - PIXEL_MEAN) / PIXEL_STD, atol=1e-5)
        for flip in (False, True):
            batch = resized.flip(-1) if flip else resized
            scores = net.conv(batch)
            scores = scores.flip(-1) if flip else scores
            scores = F.interpolate(scores.softmax(1), size=(height, width), mode="bilinear", align_corners=True)
            expected += scores[0] / (2 * len(scales))
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.equal(out.argmax(0), expected.argmax(0))


def test_rounding_the_resized_image_stays_available():
    """TEST.TTA.ROUND_RESIZED_IMAGE: the resized image rounded back to uint8 (e.g. for models
    that resize it again with PIL)."""
    image = random_image(37, 45)
    seen = []

    class Recorder(nn.Module):
        def forward(self, batched_inputs):
            seen.extend(x["image"] for x in batched_inputs)
            return [{"sem_seg": torch.zeros(2, x["height"], x["width"])} for x in batched_inputs]

    run(tta(Recorder(), scales=[0.5, 1.0], flip=False), image)
    assert seen[0].dtype == torch.float32 and not torch.equal(seen[0], seen[0].round())
    assert seen[1] is image  # scale 1: the image itself
    seen.clear()
    cfg = get_wss_cfg(opts=["TEST.TTA.ENABLED", True, "TEST.TTA.SCALES", [0.5], "TEST.TTA.FLIP", False,
                            "TEST.TTA.ROUND_RESIZED_IMAGE", True])
    run(SemanticSegmentorWithTTA(cfg, Recorder()).eval(), image)
    expected = F.interpolate(image[None].float(), size=(18, 22), mode="bilinear")[0].round().to(torch.uint8)
    assert seen[0].dtype == torch.uint8 and torch.equal(seen[0], expected)
    assert not SemanticSegmentorWithTTA(get_wss_cfg(), Recorder()).round_resized_image  # the default


def test_sipe_names_the_switch_when_given_a_float_resized_image():
    from wss_d2.methods.sipe.meta_arch import resize_bicubic

    image = random_image(20, 30)
    assert resize_bicubic(image, (10, 15)).dtype == torch.uint8
    with pytest.raises(TypeError, match="TEST.TTA.ROUND_RESIZED_IMAGE True"):
        resize_bicubic(image.float(), (10, 15))
