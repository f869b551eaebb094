"""WSSCheckpointer: atomic finite-only writes, named read errors, verified loading, resume fallback."""
import logging
import os
import pickle

import pytest
import torch
from torch import nn

from wss_d2.checkpoint import (
    CheckpointMismatchError,
    CheckpointReadError,
    NonFiniteCheckpointError,
    WSSCheckpointer,
    load_weights_strict,
)


class _Net(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.predictor = nn.Conv2d(8, classes, 1)


class _Counter:
    """A checkpointable, like the trainer: state {"iteration": n}."""

    def __init__(self, n=0):
        self.n = n

    def state_dict(self):
        return {"iteration": self.n}

    def load_state_dict(self, state):
        self.n = state["iteration"]


def _saved_run(folder, iterations=(3, 7)):
    """A run folder with one checkpoint per iteration, the last named by last_checkpoint."""
    model, counter = _Net(), _Counter()
    checkpointer = WSSCheckpointer(model, str(folder), trainer=counter)
    for i in iterations:
        counter.n = i
        with torch.no_grad():
            model.predictor.bias.fill_(i)
        checkpointer.save(f"model_{i:07d}")
        os.utime(folder / f"model_{i:07d}.pth", (i, i))  # mtimes in iteration order
    return folder


def _resume(folder):
    model, counter = _Net(), _Counter(-1)
    WSSCheckpointer(model, str(folder), trainer=counter).resume_or_load("", resume=True)
    return model, counter.n


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    _saved_run(tmp_path)
    before = (tmp_path / "model_0000007.pth").read_bytes()

    def failing_save(obj, f):
        f.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    checkpointer = WSSCheckpointer(_Net(), str(tmp_path), trainer=_Counter(9))
    with pytest.raises(OSError, match="No space"):
        checkpointer.save("model_0000007")  # overwriting an existing file fails midway
    assert (tmp_path / "model_0000007.pth").read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000007.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000003.pth", "model_0000007.pth"]
    assert oct(os.stat(tmp_path / "model_0000007.pth").st_mode & 0o777) != oct(0o600)


def test_non_finite_model_is_never_saved(tmp_path):
    _saved_run(tmp_path)
    model = _Net()
    model.bn.running_var[2] = float("inf")
    checkpointer = WSSCheckpointer(model, str(tmp_path), trainer=_Counter(11))
    with pytest.raises(NonFiniteCheckpointError, match=r"bn\.running_var.*last_checkpoint still names .*model_0000007"):
        checkpointer.save("model_0000011")
    assert not (tmp_path / "model_0000011.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000007.pth"


@pytest.mark.parametrize("damage", ["truncated", "empty", "missing", "tag_empty", "tag_missing"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, damage, caplog):
    _saved_run(tmp_path)
    newest = tmp_path / "model_0000007.pth"
    if damage == "truncated":
        newest.write_bytes(newest.read_bytes()[:200])
    elif damage == "empty":
        newest.write_bytes(b"")
    elif damage == "missing":
        newest.unlink()
    elif damage == "tag_empty":
        (tmp_path / "last_checkpoint").write_text("")
        newest.write_bytes(b"")
    else:
        (tmp_path / "last_checkpoint").unlink()
        newest.write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        model, iteration = _resume(tmp_path)
    assert iteration == 3 and float(model.predictor.bias[0].detach()) == 3.0
    text = caplog.text
    assert "Resuming from" in text and "model_0000003.pth" in text
    assert ("model_0000007.pth" in text) or ("last_checkpoint" in text)


def test_resume_with_no_intact_checkpoint_names_every_file(tmp_path):
    _saved_run(tmp_path)
    for name in ("model_0000003.pth", "model_0000007.pth"):
        (tmp_path / name).write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointReadError) as e:
        _resume(tmp_path)
    message = str(e.value)
    assert "model_0000003.pth" in message and "model_0000007.pth" in message and "without --resume" in message


def test_damaged_weights_are_named(tmp_path):
    path = tmp_path / "model_final.pth"
    torch.save({"model": _Net().state_dict()}, str(path))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointReadError, match=rf"{path}.*MODEL.WEIGHTS.*truncated"):
        load_weights_strict(_Net(), str(path))
    with pytest.raises(CheckpointReadError, match=r"does not exist"):
        load_weights_strict(_Net(), str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty"):
        load_weights_strict(_Net(), "")


def _write_pkl(path, state, heuristics=True):
    data = {"model": {k: v.numpy() for k, v in state.items()}, "__author__": "test"}
    if heuristics:
        data["matching_heuristics"] = True
    with open(path, "wb") as f:
        pickle.dump(data, f)


@pytest.mark.parametrize("heuristics", [True, False])
def test_pkl_weights_are_verified(tmp_path, heuristics):
    """A 21-class .pkl into a 6-class model: detectron2 only logs "Skip loading parameter"."""
    path = str(tmp_path / "weights.pkl")
    source = _Net(classes=21)
    _write_pkl(path, source.state_dict(), heuristics)
    with pytest.raises(CheckpointMismatchError, match=r"predictor\.(weight|bias)") as e:
        load_weights_strict(_Net(classes=6), path)
    assert path in str(e.value)
    target = _Net(classes=21)  # the right model loads it
    load_weights_strict(target, path)
    assert torch.equal(target.predictor.weight, source.predictor.weight)


def test_init_loading_trains_new_layers_but_refuses_unrelated_weights(tmp_path, caplog):
    pretrained = {k: v for k, v in _Net(classes=21).state_dict().items() if not k.startswith("predictor")}
    path = str(tmp_path / "backbone.pkl")
    _write_pkl(path, pretrained)
    model = _Net(classes=6)
    WSSCheckpointer(model).load_verified(path, verify="init", checkpointables=[])
    assert torch.equal(model.backbone.weight, torch.as_tensor(pretrained["backbone.weight"]))

    unrelated = str(tmp_path / "unrelated.pth")
    torch.save({"model": {"encoder.layer.weight": torch.zeros(2)}}, unrelated)
    with pytest.raises(CheckpointMismatchError, match="loads no parameter of the model"):
        WSSCheckpointer(_Net()).load_verified(unrelated, verify="init", checkpointables=[])

    mis_shaped = str(tmp_path / "other_head.pth")
    torch.save({"model": _Net(classes=21).state_dict()}, mis_shaped)
    with caplog.at_level(logging.WARNING):
        WSSCheckpointer(_Net(classes=6)).load_verified(mis_shaped, verify="init", checkpointables=[])
    assert "trained from scratch: predictor.bias, predictor.weight" in caplog.text
