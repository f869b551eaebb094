"""
Resuming: a run killed after a periodic checkpoint and resumed ends with the weights of an
uninterrupted run (1 and 2 processes); a diverged run leaves only finite resume points; an
extended SOLVER.MAX_ITER continues on the longer schedule; the interrupted checkpoint holds
exactly the state after the last finished iteration.
"""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from detectron2.engine.hooks import HookBase

from wss_d2 import get_wss_cfg
from wss_d2.data.train_loader import seed_all
from wss_d2.engine import Trainer

from .conftest import MAIN_CONFIG, REPO

pytestmark = pytest.mark.slow

# small and fast: 64-px crops, 4 images a batch, no evaluation
SMALL = ["SOLVER.IMS_PER_BATCH", "4", "INPUT.CROP.SIZE", "(64, 64)", "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()"]


def _command(output_dir, *opts, num_gpus=1, resume=False):
    command = [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", MAIN_CONFIG,
               "--num-gpus", str(num_gpus), "--dist-url", "auto"]
    return command + (["--resume"] if resume else []) + [*SMALL, *opts, "OUTPUT_DIR", str(output_dir)]


def _run(output_dir, *opts, num_gpus=1, resume=False, check=True):
    proc = subprocess.run(_command(output_dir, *opts, num_gpus=num_gpus, resume=resume), cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        pytest.fail(f"train_net.py failed ({proc.returncode}):\n{proc.stderr[-5000:]}")
    return proc


def _kill_after_checkpoint(output_dir, checkpoint, *opts, num_gpus=1):
    """Start a run and SIGKILL its whole process group once `checkpoint` is the resume point."""
    proc = subprocess.Popen(_command(output_dir, *opts, num_gpus=num_gpus), cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tag = output_dir / "last_checkpoint"
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if tag.exists() and tag.read_text().strip() == checkpoint:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{proc.stderr.read()[-3000:]}"
    assert not (output_dir / "model_final.pth").exists()


def _assert_same_state(a, b):
    a = torch.load(a, weights_only=False)
    b = torch.load(b, weights_only=False)
    assert a["iteration"] == b["iteration"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    momentum_a = a["trainer"]["_trainer"]["optimizer"]["state"]
    momentum_b = b["trainer"]["_trainer"]["optimizer"]["state"]
    assert momentum_a.keys() == momentum_b.keys() and momentum_a
    for key in momentum_a:
        assert torch.equal(momentum_a[key]["momentum_buffer"], momentum_b[key]["momentum_buffer"])


@pytest.mark.parametrize("num_gpus", [1, 2])
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, num_gpus):
    # with 2 processes the data is mapped in the main process (0 workers), with 1 by 2 workers
    opts = ["SOLVER.MAX_ITER", "12", "SOLVER.CHECKPOINT_PERIOD", "4",
            "DATALOADER.NUM_WORKERS", "2" if num_gpus == 1 else "0"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    _run(whole, *opts, num_gpus=num_gpus)
    _kill_after_checkpoint(killed, "model_0000003.pth", *opts, num_gpus=num_gpus)
    proc = _run(killed, *opts, num_gpus=num_gpus, resume=True)
    assert "Starting training from iteration 4" in proc.stderr + proc.stdout
    _assert_same_state(whole / "model_final.pth", killed / "model_final.pth")
    # metrics.json: each iteration once, in order
    with open(killed / "metrics.json") as f:
        iterations = [json.loads(line)["iteration"] for line in f if line.strip()]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 11


def test_diverged_run_leaves_only_finite_resume_points_and_resumes(tmp_path):
    proc = _run(tmp_path, "SOLVER.BASE_LR", "1e6", "SOLVER.MAX_ITER", "10", "SOLVER.CHECKPOINT_PERIOD", "2",
                "DATALOADER.NUM_WORKERS", "0", check=False)
    assert proc.returncode != 0
    log = proc.stdout + proc.stderr
    assert "Training stopped at iteration" in log
    assert ("The loss diverged at iteration" in log and "non-finite loss_sem_seg" in log) or "NaN or infinite" in log
    assert "--resume` will continue from" in log or "no checkpoint to resume from" in log
    for name in os.listdir(tmp_path):
        if name.endswith(".pth"):
            state = torch.load(tmp_path / name, weights_only=False)["model"]
            assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), name
    tag = tmp_path / "last_checkpoint"
    if tag.exists():
        assert (tmp_path / tag.read_text().strip()).exists()
    _run(tmp_path, "SOLVER.MAX_ITER", "10", "DATALOADER.NUM_WORKERS", "0", resume=True)
    final = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert final["iteration"] == 9
    assert all(torch.isfinite(v).all() for v in final["model"].values() if v.is_floating_point())


def _trainer(output_dir, *opts):
    cfg = get_wss_cfg(MAIN_CONFIG, [*SMALL, "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(output_dir), *opts])
    seed_all(0)
    return Trainer(cfg)


def test_resume_with_a_longer_schedule_continues_on_it(tmp_path, caplog):
    first = _trainer(tmp_path, "SOLVER.MAX_ITER", "6", "SOLVER.WARMUP_ITERS", "0")
    first.resume_or_load(resume=False)
    first.train()
    longer = _trainer(tmp_path, "SOLVER.MAX_ITER", "12", "SOLVER.WARMUP_ITERS", "0")
    longer.resume_or_load(resume=True)
    assert longer.start_iter == 6
    # the LR of iteration 6 on the 12-iteration poly schedule (it was 0 at the old end)
    expected = 0.05 * math.pow(1 - 6 / 12, 0.9)
    assert longer.optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9)
    assert "max_iters: 6 -> 12" in caplog.text
    longer.train()
    assert torch.load(tmp_path / "model_final.pth", weights_only=False)["iteration"] == 11


class _FailInForward(HookBase):
    """Make the model fail at one iteration after its backbone ran (BatchNorm statistics updated)."""

    def __init__(self, iteration):
        self.iteration = iteration

    def before_train(self):
        head = self.trainer.model.sem_seg_head
        forward = head.forward

        def failing(*args, **kwargs):
            if self.trainer.iter == self.iteration:
                raise RuntimeError("simulated out of memory")
            return forward(*args, **kwargs)

        head.forward = failing


def test_interrupted_checkpoint_holds_the_last_finished_iteration(tmp_path):
    whole = _trainer(tmp_path / "whole", "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "3")
    whole.resume_or_load(resume=False)
    whole.train()
    failed = _trainer(tmp_path / "failed", "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "100")
    failed.register_hooks([_FailInForward(3)])
    failed.resume_or_load(resume=False)
    with pytest.raises(RuntimeError, match="simulated out of memory"):
        failed.train()
    assert (tmp_path / "failed" / "last_checkpoint").read_text() == "model_interrupted.pth"
    interrupted = torch.load(tmp_path / "failed" / "model_interrupted.pth", weights_only=False)
    reference = torch.load(tmp_path / "whole" / "model_0000002.pth", weights_only=False)
    assert interrupted["iteration"] == 2 and interrupted["trainer"]["iteration"] == 2
    for key, value in reference["model"].items():  # also num_batches_tracked: 3, not 4
        assert torch.equal(interrupted["model"][key], value), key
    resumed = _trainer(tmp_path / "failed", "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "100")
    resumed.resume_or_load(resume=True)
    resumed.train()
    _assert_same_state(tmp_path / "whole" / "model_final.pth", tmp_path / "failed" / "model_final.pth")
