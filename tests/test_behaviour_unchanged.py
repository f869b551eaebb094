"""
Today's behaviour of SIPE and AGMM, pinned bit for bit: on a fixed seed and a tiny fixed
input, the training loss dict, the optimizer's parameter groups and the inference outputs
must equal tests/data/behaviour_reference.pt (written by tests/data/make_behaviour_reference.py,
to be rerun only when a behaviour change is intended). Refactors must leave this passing.
The reference is float32 CPU arithmetic on one thread. On the machine that recorded it the
comparison is exact (WSS_EXACT_REFERENCE=1 asks for that, for a refactor's before/after check);
by default floats may differ by 1e-5 relative, so that another CPU family's BLAS kernels do not
fail the suite while a changed weight, rule or equation still does.
"""
import math
import os

import numpy as np
import pytest
import torch

from detectron2.modeling import build_model

from wss_d2 import get_wss_cfg
from wss_d2.solver import build_optimizer

from .conftest import CONFIGS, sparse_label_batch

# WSS_BEHAVIOUR_REFERENCE: another file, e.g. one recorded on this machine from the code before a
# refactor, for an exact before/after check where the committed one was recorded on another CPU
REFERENCE = os.environ.get("WSS_BEHAVIOUR_REFERENCE") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "data", "behaviour_reference.pt"
)
CPU = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"]
CASES = {
    "sipe": (os.path.join(CONFIGS, "synthetic", "sipe_R18.yaml"), ["TEST.SIPE.SCALES", "[1.0, 0.5]"]),
    "agmm": (os.path.join(CONFIGS, "synthetic", "agmm_R18_points.yaml"), []),
}


def _sipe_inputs():
    rng = np.random.RandomState(0)
    out = []
    for i, tags in enumerate(([1, 0, 1, 0, 0], [0, 0, 0, 1, 0])):
        valid = torch.ones(32, 40, dtype=torch.bool)
        valid[24:, :] = False  # a padded crop
        out.append({
            "image": torch.as_tensor(rng.randint(0, 255, (3, 32, 40)), dtype=torch.uint8),
            "valid_mask": valid,
            "image_labels": torch.tensor([1.0, *tags]),  # background + 5 foreground tags
            "file_name": f"sipe{i}.jpg",
        })
    return out


def _agmm_inputs(num_classes=6, size=32):
    return sparse_label_batch(2, size, num_classes, 0, margin=6, class_step=2, pad=4, prefix="agmm")


INPUTS = {"sipe": _sipe_inputs, "agmm": _agmm_inputs}


def _optimizer_groups(model, optimizer):
    names = {id(p): name for name, p in model.named_parameters()}
    return [
        {**{k: v for k, v in group.items() if k != "params"}, "params": [names[id(p)] for p in group["params"]]}
        for group in optimizer.param_groups
    ]


def behaviour(method):
    """Loss dict, optimizer groups and inference outputs of `method` on its fixed input."""
    config, opts = CASES[method]
    cfg = get_wss_cfg(config, [*CPU, *opts])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = build_model(cfg).train()
        inputs = INPUTS[method]()
        losses = {name: value.detach() for name, value in model(inputs).items()}
        optimizer = build_optimizer(cfg, model)
        model.eval()
        with torch.no_grad():
            image = {k: v for k, v in inputs[0].items() if k not in ("sparse_sem_seg", "valid_mask")}
            outputs = model([{**image, "height": 28, "width": 44}])[0]
    finally:
        torch.set_num_threads(threads)
    return {
        "losses": losses,
        "optimizer": {"class": type(optimizer).__name__, "groups": _optimizer_groups(model, optimizer)},
        "outputs": {k: v for k, v in outputs.items()},
    }


EXACT = os.environ.get("WSS_EXACT_REFERENCE") == "1"
RTOL, ATOL = 1e-5, 1e-6


def _assert_same(got, expected, where):
    if isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected), f"{where}: keys {list(got)} != {list(expected)}"
        for key in expected:
            _assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(expected), f"{where}: {got} != {expected}"
        for i, (g, e) in enumerate(zip(got, expected)):
            _assert_same(g, e, f"{where}[{i}]")
    elif isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.dtype == expected.dtype, f"{where}: {got!r} vs {expected!r}"
        diff = (got.double() - expected.double()).abs().max() if got.shape == expected.shape else "shape"
        if EXACT or not expected.is_floating_point():
            assert torch.equal(got, expected), f"{where}: differs (max |diff| {diff})"
        else:
            assert got.shape == expected.shape and torch.allclose(got, expected, rtol=RTOL, atol=ATOL), \
                f"{where}: differs (max |diff| {diff})"
    elif isinstance(expected, float) and not EXACT:
        assert isinstance(got, float) and math.isclose(got, expected, rel_tol=RTOL, abs_tol=ATOL), \
            f"{where}: {got!r} != {expected!r}"
    else:
        assert type(got) is type(expected) and got == expected, f"{where}: {got!r} != {expected!r}"


@pytest.mark.parametrize("method", sorted(CASES))
def test_behaviour_matches_the_recorded_reference(method):
    expected = torch.load(REFERENCE)[method]
    _assert_same(behaviour(method), expected, method)
