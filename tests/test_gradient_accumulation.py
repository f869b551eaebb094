"""
Gradient accumulation (SOLVER.ACCUMULATE_STEPS, docs/mcc.md §8): n batches of b images per
optimizer step train like one batch of n*b images for a loss that is a mean over images, with
the iteration counter, the LR schedule and the metrics counting optimizer steps; models that
need the whole batch at once, and values below 1, are refused.
"""
import os
import time

import pytest
import torch
from torch import nn

from detectron2.engine import hooks

from wss_d2 import get_wss_cfg
from wss_d2.data.train_loader import ResumableTrainLoader
from wss_d2.engine import Trainer
from wss_d2.engine.train_loop import LossDivergedError, WSSAMPTrainer, WSSSimpleTrainer, check_gradient_accumulation
from wss_d2.solver import build_lr_scheduler, build_optimizer

from .conftest import CONFIGS

NUM_SAMPLES = 24


def _samples(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(NUM_SAMPLES, 3, generator=g, dtype=dtype)
    y = torch.randn(NUM_SAMPLES, 2, generator=g, dtype=dtype)
    return [{"x": x[i], "y": y[i]} for i in range(NUM_SAMPLES)]


class TinyModel(nn.Module):
    """A 3 -> 4 -> 2 MLP whose losses are means over the images of the batch; counts forwards."""

    def __init__(self, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.backbone = nn.Linear(3, 4).to(dtype)
        self.head = nn.Linear(4, 2).to(dtype)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.5)
        self.forwards = 0

    def predict(self, batch):
        x = torch.stack([d["x"] for d in batch])  # (B, 3)
        return self.head(torch.tanh(self.backbone(x)))  # (B, 2)

    def forward(self, batch):
        self.forwards += 1
        out = self.predict(batch)
        y = torch.stack([d["y"] for d in batch])
        return {"loss_fit": ((out - y) ** 2).sum(1).mean(), "loss_small": 0.1 * out.abs().mean()}


def _stream(samples, batch_size, log=None, delay=0.0):
    """Consecutive batches of `batch_size` samples, cycling; `log` collects each batch's indices."""
    i = 0
    while True:
        if delay:
            time.sleep(delay)
        idx = [(i * batch_size + j) % len(samples) for j in range(batch_size)]
        if log is not None:
            log.append(idx)
        yield [samples[k] for k in idx]
        i += 1


def _cfg(iters, schedule="WarmupPolyLR"):
    cfg = get_wss_cfg()
    cfg.SOLVER.OPTIMIZER = "SGD"
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.MOMENTUM = 0.9
    cfg.SOLVER.WEIGHT_DECAY = 0.01
    cfg.SOLVER.MAX_ITER = iters
    cfg.SOLVER.WARMUP_ITERS = 2
    cfg.SOLVER.LR_SCHEDULER_NAME = schedule
    return cfg


class _RecordLR(hooks.HookBase):
    def __init__(self, lrs):
        self.lrs = lrs

    def before_step(self):
        self.lrs.append(self.trainer.optimizer.param_groups[0]["lr"])


def _train(accumulate_steps, batch_size, iters, schedule="WarmupPolyLR", samples=None, trainer_class=WSSSimpleTrainer,
           dtype=torch.float64, device="cpu", **loader_kwargs):
    cfg = _cfg(iters, schedule)
    model = TinyModel(dtype).to(device)
    samples = samples if samples is not None else [{k: v.to(device) for k, v in s.items()} for s in _samples(dtype)]
    optimizer = build_optimizer(cfg, model)
    steps = []
    optimizer.register_step_post_hook(lambda *args: steps.append(1))
    scheduler = build_lr_scheduler(cfg, optimizer)
    log = []
    trainer = trainer_class(model, _stream(samples, batch_size, log, **loader_kwargs), optimizer,
                            accumulate_steps=accumulate_steps)
    lrs = []
    trainer.register_hooks([_RecordLR(lrs), hooks.LRScheduler(optimizer, scheduler)])
    trainer.train(0, iters)
    return {"trainer": trainer, "model": model, "lrs": lrs, "steps": len(steps), "batches": log, "scheduler": scheduler}


def _history(trainer, name):
    return [v for v, _ in trainer.storage.history(name).values()]


@pytest.mark.parametrize("schedule", ["WarmupPolyLR", "WarmupCosineLR"])
def test_two_batches_of_two_equal_one_batch_of_four(schedule):
    iters = 5
    whole = _train(1, 4, iters, schedule)
    accumulated = _train(2, 2, iters, schedule)
    # the same images per optimizer step
    assert sum(accumulated["batches"], []) == sum(whole["batches"], [])
    for (name, a), (_, b) in zip(accumulated["model"].named_parameters(), whole["model"].named_parameters()):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), name
    initial = dict(TinyModel().named_parameters())
    assert not torch.allclose(accumulated["model"].head.weight, initial["head.weight"])  # it did train
    # the schedule runs per optimizer step: the same LRs, those of the scheduler stepped `iters` times
    reference = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    reference_scheduler = build_lr_scheduler(_cfg(iters, schedule), reference)
    expected = []
    for _ in range(iters):
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        reference_scheduler.step()
    assert accumulated["lrs"] == pytest.approx(expected, rel=1e-12) and whole["lrs"] == accumulated["lrs"]
    assert len(set(expected)) == iters  # a schedule that changes at every step
    # the metrics: the mean over the 2 batches = the loss of the batch of 4 (equal-size batches)
    for name in ("loss_fit", "loss_small", "total_loss"):
        assert _history(accumulated["trainer"], name) == pytest.approx(_history(whole["trainer"], name), rel=1e-9)


def test_iterations_count_optimizer_steps():
    run = _train(3, 2, 4)
    trainer = run["trainer"]
    assert trainer.iter == 4  # detectron2 leaves it at max_iter after train(0, 4)
    assert run["steps"] == 4
    assert run["model"].forwards == 12 and len(run["batches"]) == 12
    assert run["scheduler"].last_epoch == 4
    assert [it for _, it in trainer.storage.history("total_loss").values()] == [0, 1, 2, 3]


def test_metrics_are_the_mean_over_the_accumulated_batches():
    samples = _samples()
    run = _train(3, 2, 1, samples=samples)
    model = TinyModel()  # the initial weights
    with torch.no_grad():
        losses = [model(samples[2 * i : 2 * i + 2]) for i in range(3)]
    for name in ("loss_fit", "loss_small"):
        expected = sum(float(d[name]) for d in losses) / 3
        assert _history(run["trainer"], name) == pytest.approx([expected], rel=1e-12)
    total = sum(float(v) for d in losses for v in d.values()) / 3
    assert _history(run["trainer"], "total_loss") == pytest.approx([total], rel=1e-12)
    # the batches have different losses, so a mean differs from any single one
    assert len({round(float(d["loss_fit"]), 6) for d in losses}) == 3


def test_data_time_sums_the_batches():
    delay = 0.03
    run = _train(3, 2, 2, delay=delay)
    data_times = _history(run["trainer"], "data_time")
    assert len(data_times) == 2 and min(data_times) >= 3 * delay
    single = _train(1, 2, 2, delay=delay)
    assert max(_history(single["trainer"], "data_time")) < 2 * delay


def test_divergence_in_an_accumulated_batch_stops_before_the_optimizer_step():
    samples = _samples()
    samples[5] = {"x": samples[5]["x"], "y": torch.full((2,), float("inf"), dtype=torch.float64)}
    # batches of 2, 2 per step: sample 5 is in batch 2, the first of iteration 1
    model = TinyModel()
    cfg = _cfg(3)
    optimizer = build_optimizer(cfg, model)
    trainer = WSSSimpleTrainer(model, _stream(samples, 2), optimizer, accumulate_steps=2)
    trainer.register_hooks([hooks.LRScheduler(optimizer, build_lr_scheduler(cfg, optimizer))])
    with pytest.raises(LossDivergedError) as info:
        trainer.train(0, 3)
    assert info.value.iteration == 1 and info.value.terms == ["loss_fit"]
    assert model.forwards == 3  # stopped at the diverged batch, not after the iteration's last
    assert not trainer.optimizer_started  # so an interrupted checkpoint can restore iteration 0's state
    # the parameters are those after iteration 0: a clean run of 1 iteration
    after_one = _train(2, 2, 1, samples=_samples())["model"]
    for (name, a), (_, b) in zip(model.named_parameters(), after_one.named_parameters()):
        assert torch.equal(a, b), name


def test_accumulate_steps_below_one_is_refused():
    samples = _samples()
    model = TinyModel()
    with pytest.raises(ValueError, match=r"SOLVER\.ACCUMULATE_STEPS.*got 0"):
        WSSSimpleTrainer(model, _stream(samples, 2), torch.optim.SGD(model.parameters(), lr=0.1), accumulate_steps=0)
    cfg = get_wss_cfg(os.path.join(CONFIGS, "synthetic", "deeplabv3plus_R18.yaml"), ["SOLVER.ACCUMULATE_STEPS", "0"])
    with pytest.raises(ValueError, match=r"SOLVER\.ACCUMULATE_STEPS.*got 0"):
        Trainer(cfg)


def test_spml_embedder_refuses_accumulation():
    cfg = get_wss_cfg(os.path.join(CONFIGS, "synthetic", "spml_R18_points.yaml"), ["SOLVER.ACCUMULATE_STEPS", "2"])
    assert cfg.MODEL.META_ARCHITECTURE == "SPMLEmbedder"
    with pytest.raises(ValueError, match=r"SOLVER\.ACCUMULATE_STEPS=2.*SPMLEmbedder"):
        Trainer(cfg)


def test_models_declare_support_by_class_attribute():
    from wss_d2.methods.spml.meta_arch import SPMLEmbedder

    class WholeBatchModel(TinyModel):
        supports_gradient_accumulation = False

    assert SPMLEmbedder.supports_gradient_accumulation is False
    check_gradient_accumulation(1, WholeBatchModel())  # no accumulation: allowed
    check_gradient_accumulation(4, TinyModel())  # no attribute: allowed
    with pytest.raises(ValueError, match=r"SOLVER\.ACCUMULATE_STEPS=4.*WholeBatchModel"):
        check_gradient_accumulation(4, WholeBatchModel())
    wrapped = nn.Module()
    wrapped.module = WholeBatchModel()  # as DistributedDataParallel holds it
    with pytest.raises(ValueError, match="WholeBatchModel"):
        check_gradient_accumulation(2, wrapped)


def test_amp_trainer_scales_every_batch_and_unscales_once():
    """WSSAMPTrainer's accumulation with a CPU GradScaler (autocast is off without CUDA, so only
    the scaling is exercised): the result is that of unscaled training on batches of 4."""
    from detectron2.utils.events import EventStorage

    from wss_d2.engine.train_loop import _TrackedStep

    iters = 3
    whole = _train(1, 4, iters)
    model = TinyModel()
    cfg = _cfg(iters)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)
    trainer = WSSAMPTrainer(model, _stream(_samples(), 2), optimizer, grad_scaler=scaler, accumulate_steps=2)
    with EventStorage(0) as storage, pytest.warns(UserWarning, match="autocast"):
        for trainer.iter in range(iters):
            _TrackedStep._run_accumulated_step(trainer)  # past detectron2's CUDA-only assert
            scheduler.step()
            storage.step()
    assert scaler.get_scale() == 2.0 ** (10 + iters)  # one update() per optimizer step
    for (name, a), (_, b) in zip(model.named_parameters(), whole["model"].named_parameters()):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="AMP training needs CUDA")
def test_amp_trainer_accumulates():
    iters = 3
    kwargs = dict(trainer_class=WSSAMPTrainer, dtype=torch.float32, device="cuda")
    whole = _train(1, 4, iters, **kwargs)
    accumulated = _train(2, 2, iters, **kwargs)
    assert accumulated["steps"] == iters and accumulated["model"].forwards == 2 * iters
    for (name, a), (_, b) in zip(accumulated["model"].named_parameters(), whole["model"].named_parameters()):
        assert torch.allclose(a, b, rtol=1e-2, atol=1e-3), name  # fp16 matmuls
    assert accumulated["lrs"] == whole["lrs"]



class _TinyTrainer(Trainer):
    """The wss_d2 Trainer on TinyModel and the samples above, through the resumable loader."""

    @classmethod
    def build_model(cls, cfg):
        return TinyModel()

    @classmethod
    def build_train_loader(cls, cfg):
        return ResumableTrainLoader(_samples(), _as_is, total_batch_size=cfg.SOLVER.IMS_PER_BATCH, seed=0)


def _as_is(sample):
    return sample


def _tiny_trainer(output_dir, accumulate_steps, batch_size, iters=3):
    cfg = _cfg(iters)
    cfg.merge_from_list(["SOLVER.IMS_PER_BATCH", batch_size, "SOLVER.ACCUMULATE_STEPS", accumulate_steps,
                         "SOLVER.CHECKPOINT_PERIOD", 1, "TEST.EVAL_PERIOD", 0, "DATASETS.TRAIN", (),
                         "DATASETS.TEST", (), "SEED", 0, "OUTPUT_DIR", str(output_dir)])
    return _TinyTrainer(cfg)


def _final_weights(output_dir):
    return torch.load(os.path.join(output_dir, "model_final.pth"), weights_only=False)["model"]


def test_trainer_accumulates_and_resumes_at_the_right_batch(tmp_path):
    """The full Trainer: 2 x 2 images per step equal 4 images per step; the loader counts batches,
    so a resume at iteration i continues at batch i x ACCUMULATE_STEPS, as the uninterrupted run."""
    runs = {}
    for name, n, b in [("whole", 1, 4), ("accumulated", 2, 2)]:
        trainer = _tiny_trainer(tmp_path / name, n, b)
        trainer.resume_or_load(resume=False)
        trainer.train()
        assert trainer.iter == 3 and trainer.model.forwards == 3 * n
        runs[name] = _final_weights(tmp_path / name)
    for key, value in runs["whole"].items():
        assert torch.allclose(runs["accumulated"][key], value, rtol=1e-10, atol=1e-12), key

    checkpoint = torch.load(tmp_path / "accumulated" / "model_0000000.pth", weights_only=False)
    assert checkpoint["iteration"] == 0 and checkpoint["trainer"]["accumulate_steps"] == 2
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    torch.save(checkpoint, resumed_dir / "model_0000000.pth")
    (resumed_dir / "last_checkpoint").write_text("model_0000000.pth")
    resumed = _tiny_trainer(resumed_dir, 2, 2)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 1 and resumed.data_loader.start_iter == 2
    resumed.train()
    assert resumed.model.forwards == 4
    for key, value in runs["accumulated"].items():
        assert torch.equal(_final_weights(resumed_dir)[key], value), key
