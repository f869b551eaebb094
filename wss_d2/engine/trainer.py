"""The wss_d2 Trainer: detectron2's DefaultTrainer with parts picked from the config."""
import contextlib
import json
import logging
import os
import warnings
import weakref

import torch

from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.engine import DefaultTrainer, TrainerBase, create_ddp_model
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import WSSCheckpointer
from ..data import build_dataset_mapper
from ..data.label_check import check_evaluation_labels_from_config, check_training_sets_not_all_empty
from ..data.sparse_label_check import check_sparse_labels_from_config
from ..data.train_loader import ResumableTrainLoader, build_resumable_train_loader, seed_all, step_seed
from ..evaluation import build_evaluator
from ..inference import maybe_wrap_with_tta
from ..solver import build_lr_scheduler, build_optimizer
from .hooks import BestValCheckpointer, CheckpointOnInterrupt, PredictionImages
from .train_loop import WSSAMPTrainer, WSSSimpleTrainer, check_gradient_accumulation

__all__ = ["Trainer", "CheckpointOnInterrupt", "BestValCheckpointer"]

logger = logging.getLogger(__name__)


class Trainer(DefaultTrainer):
    """
    DefaultTrainer that
      * builds the dataset mapper (INPUT.DATASET_MAPPER_NAME), optimizer, LR schedule and
        evaluator (from the dataset's `evaluator_type`) from the config;
      * checkpoints the optimizer state, which detectron2 0.6 leaves out (a resumed run
        would restart SGD momentum from zero), and the run's seed;
      * resumes exactly: batch i is a function of (seed, i) (ResumableTrainLoader) and the
        model's randomness is reseeded at every iteration, so a run killed after a checkpoint
        and resumed ends with the weights of an uninterrupted one (bit-identical on CPU);
      * on resume, takes the LR schedule and the optimizer's hyperparameters from the config
        and only their position from the checkpoint, so SOLVER.MAX_ITER can be extended;
      * writes checkpoints atomically, never with non-finite weights, and resumes from the
        newest intact one (WSSCheckpointer);
      * wraps the model in DistributedDataParallel without device ids on CPU, so that
        multi-process training works with GLOO (detectron2 always passes a GPU id);
      * saves the state of the last finished iteration when training stops early
        (CheckpointOnInterrupt);
      * accumulates gradients over SOLVER.ACCUMULATE_STEPS loader batches per optimizer step
        (docs/mcc.md §8); iterations, the schedule and every period count optimizer steps.
    """

    def __init__(self, cfg):
        # DefaultTrainer.__init__ with the CPU-capable DDP wrapping.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        # one seed for the data stream and the per-iteration RNG; saved in every checkpoint
        self.seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
        self.accumulate_steps = cfg.SOLVER.ACCUMULATE_STEPS
        check_gradient_accumulation(self.accumulate_steps)  # the value, before building anything
        model = self.build_model(cfg)
        check_gradient_accumulation(self.accumulate_steps, model)  # the model, before the data
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        if isinstance(data_loader, ResumableTrainLoader):
            data_loader.seed = self.seed
        ddp_kwargs = {} if torch.cuda.is_available() else {"device_ids": None}
        # a model whose configuration leaves some parameters out of the loss (MCC without its contrast,
        # a classification-only stand-in) says so; DDP then looks for them every step
        if getattr(model, "find_unused_parameters", False):
            ddp_kwargs["find_unused_parameters"] = True
        model = create_ddp_model(model, broadcast_buffers=False, **ddp_kwargs)
        trainer_class = WSSAMPTrainer if cfg.SOLVER.AMP.ENABLED else WSSSimpleTrainer
        self._trainer = trainer_class(model, data_loader, optimizer, accumulate_steps=self.accumulate_steps)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = WSSCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.failure = None  # the exception that stopped training, for CheckpointOnInterrupt
        self._phase = "idle"
        self._last_finished_iter = -1
        self._buffers_before_step = {}
        self.register_hooks(self.build_hooks())

    def train(self):
        """Train; return the last evaluation's results (detectron2 0.6 returns them only
        when TEST.EXPECTED_RESULTS is set, after checking them)."""
        self._last_finished_iter = self.start_iter - 1
        super().train()
        return getattr(self, "_last_eval_results", None)

    # --- the phases of an iteration, for an exact interrupted checkpoint --------------------
    @contextlib.contextmanager
    def _recording_failure(self):
        try:
            yield
        except BaseException as e:  # also KeyboardInterrupt, for CheckpointOnInterrupt's message
            self.failure = e
            raise

    def before_step(self):
        self._phase = "before_step"
        with self._recording_failure():
            # the model's randomness (dropout, ...) of this iteration, the same after a resume
            seed_all(step_seed(self.seed, comm.get_rank(), self.iter))
            super().before_step()

    def run_step(self):
        self._phase = "run_step"
        # the forward pass updates BatchNorm statistics before the loss is known
        self._buffers_before_step = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        with self._recording_failure():
            super().run_step()

    def after_step(self):
        self._phase = "after_step"
        with self._recording_failure():
            super().after_step()
        self._last_finished_iter = self.iter
        self._phase = "finished"

    def step_state(self):
        """(last finished iteration, restore) when the model and optimizer in memory can be
        brought back to the state after it; (None, None) when the optimizer step had begun."""
        if self._phase in ("idle", "before_step", "finished"):
            return self._last_finished_iter, lambda: None
        if self._phase == "run_step" and not self._trainer.optimizer_started:
            def restore():
                with torch.no_grad():
                    for name, buffer in self.model.named_buffers():
                        if name in self._buffers_before_step:
                            buffer.copy_(self._buffers_before_step[name])
            return self._last_finished_iter, restore
        return None, None

    def build_hooks(self):
        hooks = super().build_hooks() + [CheckpointOnInterrupt(self.checkpointer)]
        best = self.cfg.SOLVER.BEST_CHECKPOINTER
        # after EvalHook, whose results only the main process stores
        if best.METRIC and comm.is_main_process():
            hooks.append(BestValCheckpointer(self.cfg.TEST.EVAL_PERIOD, self.checkpointer, best.METRIC, best.MODE))
        if self.cfg.TEST.VIS_PREDICTIONS > 0 and self.cfg.DATASETS.TEST and comm.is_main_process():
            # the writers put the images to TensorBoard at their next write (at the latest after training)
            hooks.append(PredictionImages(self.cfg, self.cfg.TEST.EVAL_PERIOD, self.cfg.TEST.VIS_PREDICTIONS))
        return hooks

    # --- checkpoint state and resume --------------------------------------------------------
    def resume_or_load(self, resume=True):
        """
        resume=True and a checkpoint in OUTPUT_DIR: continue from it (the newest intact one if
        the one `last_checkpoint` names is damaged), with the data stream and RNG where the
        uninterrupted run would be; metrics.json entries after it (written by the stopped run
        after its last checkpoint) are dropped. Otherwise start from MODEL.WEIGHTS.
        """
        self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = self.iter + 1
            if isinstance(self.data_loader, ResumableTrainLoader):
                # the loader counts batches: ACCUMULATE_STEPS of them per iteration
                self.data_loader.start_iter = self.start_iter * self.accumulate_steps
                self.data_loader.seed = self.seed
            if comm.is_main_process():
                drop_metrics_from(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"), self.start_iter)
            if self.start_iter >= self.max_iter:
                logger.warning(
                    f"The checkpoint is at iteration {self.iter}, SOLVER.MAX_ITER is {self.max_iter}: nothing "
                    "left to train (raise SOLVER.MAX_ITER to train longer)"
                )

    def state_dict(self):
        state = super().state_dict()
        state["_trainer"] = self._trainer.state_dict()  # optimizer (and AMP grad scaler)
        state["seed"] = self.seed
        state["accumulate_steps"] = self.accumulate_steps
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        hooks = dict(state_dict.get("hooks", {}))
        schedule = hooks.pop("LRScheduler", None)  # restored below: position only
        state_dict["hooks"] = hooks
        configured = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        super().load_state_dict(state_dict)
        self.seed = state_dict.get("seed", self.seed)
        saved_steps = state_dict.get("accumulate_steps", 1)
        if saved_steps != self.accumulate_steps:
            logger.warning(
                f"The checkpoint was trained with SOLVER.ACCUMULATE_STEPS={saved_steps}, the config has "
                f"{self.accumulate_steps}: the data stream continues at batch (iteration + 1) x "
                f"{self.accumulate_steps}, not where the checkpoint's run stopped"
            )
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
            keep_configured_hyperparameters(self.optimizer, configured)
        if schedule is not None and self.iter + 1 < self.max_iter:
            restore_schedule_position(self.scheduler, self.optimizer, schedule)

    @classmethod
    def build_model(cls, cfg):
        check_num_classes(cfg)
        return super().build_model(cfg)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """detectron2's test loop, through the TTA / sliding-window wrapper when the config enables it."""
        return super().test(cfg, maybe_wrap_with_tta(cfg, model), evaluators)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        check_sparse_labels_from_config(cfg)  # fails before training on a wrong unlabelled value
        check_evaluation_labels_from_config(cfg)  # a bad val label fails now, not at the final evaluation
        mapper = build_dataset_mapper(cfg, is_train=True)
        check_training_sets_not_all_empty(cfg, mapper)  # fails now, not after reading every image
        return build_resumable_train_loader(cfg, mapper)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=build_dataset_mapper(cfg, is_train=False, dataset_names=[dataset_name])
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """TEST.EVALUATORS ("sem_seg", "cam"), or by the dataset's evaluator_type when empty."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_folder)


def check_num_classes(cfg):
    """Fail before training if the model's class count differs from a dataset's class list."""
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
        classes = MetadataCatalog.get(name).get("stuff_classes")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.NUM_CLASSES={num_classes} but dataset {name!r} has "
                f"{len(classes)} classes (stuff_classes)"
            )


# what a scheduler's state_dict holds besides its schedule parameters
_SCHEDULE_POSITION = ("last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "verbose")


def _plain(value):
    return isinstance(value, (int, float, str, bool, type(None))) or (
        isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str, bool)) for v in value)
    )


def restore_schedule_position(scheduler, optimizer, saved):
    """
    Resume rule for the LR schedule: its parameters (SOLVER.BASE_LR, MAX_ITER, WARMUP_*,
    POLY_LR_*, STEPS, ...) are the config's, only its position (the iteration) comes from the
    checkpoint. Extending SOLVER.MAX_ITER thus continues on the longer schedule, whose LR at
    the resumed iteration is higher than the old schedule's; the change is logged.
    """
    fresh = scheduler.state_dict()
    changed = [
        f"{k}: {saved[k]} -> {fresh[k]}"
        for k in sorted(set(saved) & set(fresh))
        if k not in _SCHEDULE_POSITION and _plain(saved[k]) and _plain(fresh[k]) and saved[k] != fresh[k]
    ]
    scheduler.last_epoch = saved["last_epoch"]
    scheduler._step_count = saved.get("_step_count", scheduler._step_count)
    with warnings.catch_warnings():  # torch warns when get_lr() is called outside step()
        warnings.simplefilter("ignore")
        lrs = scheduler.get_lr()
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = list(lrs)
    if changed:
        logger.warning(
            "Resuming with another LR schedule than the checkpoint's (" + "; ".join(changed) + "): the config's "
            f"schedule continues from iteration {saved['last_epoch']}, at LR {lrs[0]:.6g}"
        )


def keep_configured_hyperparameters(optimizer, configured):
    """torch's optimizer.load_state_dict also restores each group's hyperparameters; keep the
    config's (weight decay, momentum, ...), as for the schedule, and log what differed."""
    changed = set()
    for group, wanted in zip(optimizer.param_groups, configured):
        for key, value in wanted.items():
            if key == "lr":
                continue  # set by the schedule
            if key in group and _plain(value) and group[key] != value:
                changed.add(f"{key}: {group[key]} -> {value}")
            group[key] = value
    if changed:
        logger.warning("Resuming with the config's optimizer settings, not the checkpoint's: " + "; ".join(sorted(changed)))


def drop_metrics_from(path, first_iteration):
    """Remove the metrics.json entries of iterations >= first_iteration (a stopped run logs a
    few iterations after its last checkpoint; the resumed run logs them again)."""
    if not os.path.isfile(path):
        return
    with open(path, "r+") as f:
        lines = f.readlines()
        kept = []
        for line in lines:
            try:
                iteration = json.loads(line).get("iteration", -1)
            except ValueError:
                continue  # a line cut by the kill
            if iteration < first_iteration:
                kept.append(line if line.endswith("\n") else line + "\n")
        if len(kept) != len(lines):
            f.seek(0)
            f.writelines(kept)
            f.truncate()
            logger.info(f"metrics.json: dropped {len(lines) - len(kept)} entries from iteration {first_iteration} on")
