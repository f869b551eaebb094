"""Strict loading: a checkpoint that does not fit the model fails, naming the keys."""
import pytest
import torch
from torch import nn

from wss_d2.checkpoint import CheckpointMismatchError, load_weights_strict


class _Net(nn.Module):
    def __init__(self, classes=4, extra=False):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.predictor = nn.Conv2d(8, classes, 1)
        if extra:
            self.aux = nn.Linear(2, 2)


def test_matching_checkpoint_loads(tmp_path):
    source = _Net()
    path = str(tmp_path / "model.pth")
    torch.save({"model": source.state_dict(), "iteration": 3}, path)
    target = _Net()
    load_weights_strict(target, path)
    assert torch.equal(target.predictor.weight, source.predictor.weight)
    assert torch.equal(target.bn.running_mean, source.bn.running_mean)


def test_mismatched_checkpoint_names_file_and_keys(tmp_path):
    path = str(tmp_path / "model.pth")
    torch.save({"model": _Net(classes=4, extra=True).state_dict()}, path)
    with pytest.raises(CheckpointMismatchError) as e:
        load_weights_strict(_Net(classes=6), path)
    message = str(e.value)
    assert path in message
    assert "predictor.weight (checkpoint (4, 8, 1, 1), model (6, 8, 1, 1))" in message
    assert "not in the model: aux.bias, aux.weight" in message
    state = _Net().state_dict()
    del state["bn.running_var"]
    torch.save(state, path)  # a bare state dict, as torch.save(model.state_dict()) writes
    with pytest.raises(CheckpointMismatchError, match="missing from the checkpoint: bn.running_var"):
        load_weights_strict(_Net(), path)
