"""Training hooks of wss_d2: the interrupted-run checkpoint, the best-on-val checkpoint, prediction images."""
import logging
import os

from detectron2.engine.hooks import BestCheckpointer, HookBase
from detectron2.utils import comm

from ..checkpoint import non_finite_tensors
from ..checkpoint.checkpointer import listed
from .train_loop import LossDivergedError

__all__ = ["BestValCheckpointer", "CheckpointOnInterrupt", "PredictionImages"]

logger = logging.getLogger(__name__)

INTERRUPTED = "model_interrupted"


class BestValCheckpointer(BestCheckpointer):
    """
    detectron2's BestCheckpointer (model_best.pth at the best SOLVER.BEST_CHECKPOINTER.METRIC),
    with a check of the mode up front and, when the evaluation did not log the metric (a typo),
    a warning that lists the metrics it did log.
    """

    def __init__(self, eval_period, checkpointer, val_metric, mode="max"):
        if mode not in ("max", "min"):
            raise ValueError(f"SOLVER.BEST_CHECKPOINTER.MODE must be 'max' or 'min', got {mode!r}")
        super().__init__(eval_period, checkpointer, val_metric, mode)

    def _best_checking(self):
        latest = self.trainer.storage.latest()
        if self._val_metric not in latest:
            logged = sorted(k for k in latest if "/" in k and not k.startswith(("loss", "lr")))
            logger.warning(
                f"SOLVER.BEST_CHECKPOINTER.METRIC {self._val_metric!r} was not logged by the evaluation, "
                f"so no model_best.pth is kept; logged metrics: {logged}"
            )
            return
        super()._best_checking()


class CheckpointOnInterrupt(HookBase):
    """
    When training stops before SOLVER.MAX_ITER (a bad input file, out of memory, a diverged
    loss, Ctrl-C), save `model_interrupted.pth` holding exactly the state after the last
    finished iteration and point `last_checkpoint` at it, so that `--resume` continues instead
    of losing the work. Nothing is saved when that state is not available (the failure came
    after the optimizer step had begun) or not finite (the weights diverged): `last_checkpoint`
    then keeps naming the last periodic checkpoint. The log says which file `--resume` uses.

    The trainer provides `step_state()`: (last finished iteration or None, restore), where
    `restore()` puts back what the failed step had already changed (BatchNorm statistics).
    """

    def __init__(self, checkpointer):
        self.checkpointer = checkpointer

    def after_train(self):
        trainer = self.trainer
        if trainer.iter >= trainer.max_iter:
            return  # finished
        try:
            self._save_interrupted(trainer)
        except Exception:  # never hide the failure that stopped the training
            logger.exception("Could not save the interrupted checkpoint")

    def _save_interrupted(self, trainer):
        failure = getattr(trainer, "failure", None)
        cause = f"{type(failure).__name__}: {str(failure).rstrip('.')}" if failure is not None else "an interruption"
        if isinstance(failure, LossDivergedError):
            cause = f"the loss diverged at iteration {failure.iteration} (non-finite {', '.join(failure.terms)})"
        last_finished, restore = trainer.step_state()
        saved, reason = False, ""
        if last_finished is None:
            reason = "the failure came after the optimizer step had begun, so the state of a finished iteration is no longer in memory"
        elif last_finished < trainer.start_iter:
            reason = "no iteration finished in this run"
        else:
            restore()
            bad = non_finite_tensors(self.checkpointer.model.state_dict())
            if bad:
                reason = f"{len(bad)} model tensors are NaN or infinite ({listed(bad, 5)})"
            else:
                current = trainer.iter
                trainer.iter = last_finished  # the checkpoint records the iteration it holds
                try:
                    self.checkpointer.save(INTERRUPTED, iteration=last_finished)
                finally:
                    trainer.iter = current
                saved = True
        if not comm.is_main_process():
            return
        resume_from = self.checkpointer.named_checkpoint()
        if saved:
            what = f"saved {INTERRUPTED}.pth (iteration {last_finished}, the last finished one)"
        else:
            what = f"no {INTERRUPTED}.pth written: {reason}"
        then = (
            f"`--resume` will continue from {resume_from}" if resume_from and os.path.isfile(resume_from)
            else "there is no checkpoint to resume from: `--resume` would start from MODEL.WEIGHTS"
        )
        logger.error(f"Training stopped at iteration {trainer.iter}: {cause}; {what}. Fix the cause; {then}.")


class PredictionImages(HookBase):
    """
    At each evaluation (every TEST.EVAL_PERIOD iterations and at the end), the model's predictions of
    the first TEST.VIS_PREDICTIONS images of DATASETS.TEST[0] as overlays (class names, colours, legend)
    in the event storage, which detectron2's TensorBoard writer puts under "predictions/<image_id>".
    Main process only; through the same TTA / sliding-window path as the evaluation.
    """

    def __init__(self, cfg, eval_period, num_images):
        self.cfg = cfg.clone()
        self.eval_period = eval_period
        self.num_images = num_images
        self._inputs = None

    def _load(self):
        from detectron2.data import DatasetCatalog, MetadataCatalog

        from ..data import build_dataset_mapper
        from ..data.readers import read_image

        name = self.cfg.DATASETS.TEST[0]
        mapper = build_dataset_mapper(self.cfg, is_train=False, dataset_names=[name])
        records = DatasetCatalog.get(name)[: self.num_images]
        self.metadata = MetadataCatalog.get(name)
        self._inputs = [(mapper(dict(r)), read_image(r["file_name"], "RGB")) for r in records]

    def _draw(self):
        import torch

        from ..inference import maybe_wrap_with_tta
        from ..utils.visualization import overlay_with_legend

        if self._inputs is None:
            self._load()
        model = getattr(self.trainer.model, "module", self.trainer.model)
        was_training = model.training
        model.eval()
        try:
            wrapped = maybe_wrap_with_tta(self.cfg, model)
            with torch.no_grad():
                for inputs, image in self._inputs:
                    labels = wrapped([inputs])[0]["sem_seg"].argmax(dim=0).cpu().numpy()
                    picture = overlay_with_legend(image, labels, self.metadata, min_side=0)
                    tensor = torch.as_tensor(picture).permute(2, 0, 1).float() / 255
                    self.trainer.storage.put_image(f"predictions/{inputs.get('image_id', '?')}", tensor)
        finally:
            model.train(was_training)

    def after_step(self):
        if not comm.is_main_process():
            return
        next_iter = self.trainer.iter + 1
        last = next_iter == self.trainer.max_iter
        if (self.eval_period > 0 and next_iter % self.eval_period == 0) or last:
            self._draw()
