"""The wss_d2 Trainer: detectron2's DefaultTrainer with parts picked from the config."""
import logging
import os
import weakref

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, create_ddp_model
from detectron2.engine.hooks import BestCheckpointer, HookBase
from detectron2.evaluation import DatasetEvaluators
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..data import build_dataset_mapper
from ..data.sparse_label_check import check_sparse_labels_from_config
from ..evaluation import CAMEvaluator, WSSSemSegEvaluator
from ..inference import DenseCRFPool, maybe_wrap_with_tta
from ..solver import build_lr_scheduler, build_optimizer

__all__ = ["Trainer", "CheckpointOnInterrupt", "BestValCheckpointer"]

logger = logging.getLogger(__name__)


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
    When training stops before SOLVER.MAX_ITER (a bad input file, an out-of-memory error,
    Ctrl-C), save `model_interrupted.pth` for the last finished iteration and point
    `last_checkpoint` at it, so that `--resume` continues instead of losing the work.
    """

    def __init__(self, checkpointer):
        self.checkpointer = checkpointer

    def after_train(self):
        trainer = self.trainer
        last_finished = trainer.iter - 1  # trainer.iter is the iteration that failed
        if trainer.iter >= trainer.max_iter or last_finished < trainer.start_iter:
            return
        trainer.iter = last_finished  # the checkpoint records the iteration it holds
        try:
            self.checkpointer.save("model_interrupted", iteration=last_finished)
        finally:
            trainer.iter = last_finished + 1
        logger.warning(
            f"Training stopped at iteration {last_finished + 1}; saved model_interrupted.pth in "
            f"{self.checkpointer.save_dir}. Fix the cause and rerun with --resume to continue."
        )


class Trainer(DefaultTrainer):
    """
    DefaultTrainer that
      * builds the dataset mapper (INPUT.DATASET_MAPPER_NAME), optimizer, LR schedule and
        evaluator (from the dataset's `evaluator_type`) from the config;
      * checkpoints the optimizer state, which detectron2 0.6 leaves out (a resumed run
        would restart SGD momentum from zero);
      * wraps the model in DistributedDataParallel without device ids on CPU, so that
        multi-process training works with GLOO (detectron2 always passes a GPU id);
      * saves a checkpoint when training stops early (CheckpointOnInterrupt).
    """

    def __init__(self, cfg):
        # DefaultTrainer.__init__ with the CPU-capable DDP wrapping.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        ddp_kwargs = {} if torch.cuda.is_available() else {"device_ids": None}
        model = create_ddp_model(model, broadcast_buffers=False, **ddp_kwargs)
        trainer_class = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = trainer_class(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def train(self):
        """Train; return the last evaluation's results (detectron2 0.6 returns them only
        when TEST.EXPECTED_RESULTS is set, after checking them)."""
        super().train()
        return getattr(self, "_last_eval_results", None)

    def build_hooks(self):
        hooks = super().build_hooks() + [CheckpointOnInterrupt(self.checkpointer)]
        best = self.cfg.SOLVER.BEST_CHECKPOINTER
        # after EvalHook, whose results only the main process stores
        if best.METRIC and comm.is_main_process():
            hooks.append(BestValCheckpointer(self.cfg.TEST.EVAL_PERIOD, self.checkpointer, best.METRIC, best.MODE))
        return hooks

    def state_dict(self):
        state = super().state_dict()
        state["_trainer"] = self._trainer.state_dict()  # optimizer (and AMP grad scaler)
        return state

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])

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
        return build_detection_train_loader(cfg, mapper=build_dataset_mapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=build_dataset_mapper(cfg, is_train=False, dataset_names=[dataset_name])
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """TEST.EVALUATORS ("sem_seg", "cam"), or by the dataset's evaluator_type when empty."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        kinds = list(cfg.TEST.EVALUATORS)
        if not kinds:
            evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type")
            if evaluator_type not in ("sem_seg", "cityscapes_sem_seg"):  # trainId labels: plain mIoU
                raise ValueError(
                    f"No wss_d2 evaluator for dataset {dataset_name!r} with evaluator_type={evaluator_type!r}"
                )
            kinds = ["sem_seg"]
        evaluators = []
        for kind in kinds:
            if kind == "sem_seg":
                # TEST.CRF.ENABLED: dense CRF on a worker pool, overlapping the model's inference
                crf = (lambda: DenseCRFPool(cfg)) if cfg.TEST.CRF.ENABLED else None
                evaluators.append(
                    WSSSemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder, crf=crf)
                )
            elif kind == "cam":
                evaluators.append(CAMEvaluator(cfg, dataset_name, output_dir=output_folder))
            else:
                raise ValueError(f"TEST.EVALUATORS: unknown evaluator {kind!r}; use 'sem_seg' and/or 'cam'")
        return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)


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
