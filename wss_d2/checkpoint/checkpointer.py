"""
The checkpointer of wss_d2 runs: detectron2's DetectionCheckpointer (every weight format it
reads: .pth, detectron2 and Caffe2 .pkl, URLs) made safe to resume from:

  * a checkpoint and `last_checkpoint` are written through a temporary name, fsync'ed and
    renamed, so a kill, a full disk or a power loss leaves either the old file or the new one;
  * a model with a non-finite parameter or buffer is never written (the training has diverged;
    `last_checkpoint` keeps naming the last finite checkpoint);
  * a file that cannot be read is reported by name, and `--resume` falls back from a damaged
    newest checkpoint to the newest intact one beside it, saying so;
  * what a checkpoint loads is verified: `strict` (evaluation, export, resume) fails naming
    the keys when any model parameter or buffer is not loaded, has another shape, or the
    checkpoint holds parameters the model lacks; `init` (training from MODEL.WEIGHTS, e.g. an
    ImageNet backbone) lists what is trained from scratch and fails only when nothing loads.
"""
import contextlib
import logging
import os
import tempfile

import torch

from detectron2.checkpoint import DetectionCheckpointer

__all__ = [
    "CheckpointMismatchError",
    "CheckpointReadError",
    "NonFiniteCheckpointError",
    "WSSCheckpointer",
    "non_finite_tensors",
]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last_checkpoint"
MAX_LISTED = 10
REMOTE_PREFIXES = ("detectron2://", "http://", "https://", "catalog://", "manifold://")
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class CheckpointMismatchError(ValueError):
    """A checkpoint whose parameters do not match the model's."""


class CheckpointReadError(RuntimeError):
    """A checkpoint file that is missing, truncated or not a checkpoint."""


class NonFiniteCheckpointError(FloatingPointError):
    """A model with NaN or infinite weights, which must not become a resume point."""


def listed(keys, limit=MAX_LISTED):
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def non_finite_tensors(state_dict):
    """Names of the floating-point tensors of `state_dict` that hold a NaN or an infinity."""
    return [
        name for name, value in state_dict.items()
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, fsync it and rename it to `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; a checkpoint is as readable as any output
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


class WSSCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer with atomic, finite-only writes, named read errors, verified
    loading (`verify` = "strict", "init" or None) and a resume that skips damaged files."""

    def __init__(self, model, save_dir="", *, save_to_disk=None, **checkpointables):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.verify = None  # set by load_verified / resume_or_load for the load in progress
        self.source = "checkpoint"  # what named the file (a config key, a flag), for messages
        self._current_path = ""

    # ------------------------------------------------------------------ writing
    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        bad = non_finite_tensors(data["model"])
        if bad:
            previous = self.named_checkpoint()
            keep = f"{LAST_CHECKPOINT} still names {previous}" if previous else "no checkpoint was written before"
            raise NonFiniteCheckpointError(
                f"Not saving {save_file}: {len(bad)} model tensors are NaN or infinite ({listed(bad)}); "
                f"the training has diverged. {keep}."
            )
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        path = os.path.join(self.save_dir, LAST_CHECKPOINT)
        atomic_write(path, lambda f: f.write(last_filename_basename.encode()))

    # ------------------------------------------------------------------ reading
    def _load_file(self, filename):
        self._current_path = filename  # fvcore passes only the loaded dict on; messages name the file
        try:
            return super()._load_file(filename)
        except Exception as e:  # truncated zip, 0-byte file, not a pickle, ...
            size = os.path.getsize(filename) if os.path.isfile(filename) else None
            raise CheckpointReadError(
                f"Cannot read checkpoint {filename} ({self.source}; {size} bytes): {type(e).__name__}: {e}. "
                "The file is truncated, damaged or not a checkpoint."
            ) from e

    def load(self, path, *args, **kwargs):
        if path and not path.startswith(REMOTE_PREFIXES) and not os.path.isfile(path):
            raise CheckpointReadError(f"Checkpoint {path} ({self.source}) does not exist")
        return super().load(path, *args, **kwargs)

    def load_verified(self, path, *, verify="strict", source="MODEL.WEIGHTS", checkpointables=None):
        """Load `path` and verify what it loaded (see the module docstring)."""
        self.verify, self.source = verify, source
        try:
            return self.load(path, checkpointables=checkpointables)
        finally:
            self.verify, self.source = None, "checkpoint"

    def _load_model(self, checkpoint):
        heuristics = bool(checkpoint.get("matching_heuristics", False))
        shapes = {k: tuple(getattr(v, "shape", ())) for k, v in checkpoint["model"].items()}
        incompatible = super()._load_model(checkpoint)
        if self.verify == "strict":
            self._check_strict(incompatible, heuristics)
        elif self.verify == "init":
            self._check_init(incompatible, shapes)
        return incompatible

    def _model_name(self):
        model = getattr(self.model, "module", self.model)
        return type(model).__name__

    def _check_strict(self, incompatible, heuristics):
        problems = []
        if incompatible.incorrect_shapes:
            problems.append("shapes differ for " + listed(
                f"{k} (checkpoint {tuple(c)}, model {tuple(m)})" for k, c, m in incompatible.incorrect_shapes
            ))
        if incompatible.missing_keys:
            what = "not loaded (missing, or of another shape, in the converted weights)" if heuristics else \
                "missing from the checkpoint"
            problems.append(f"{what}: {listed(incompatible.missing_keys)}")
        if incompatible.unexpected_keys:
            problems.append(f"not in the model: {listed(incompatible.unexpected_keys)}")
        if problems:
            raise CheckpointMismatchError(
                f"Checkpoint {self._current_path} ({self.source}) does not fit the model ({self._model_name()}): "
                + "; ".join(problems)
                + ". Check MODEL.* in the config (e.g. NUM_CLASSES, RESNETS.DEPTH, MASK_FORMER.NUM_OBJECT_QUERIES) against the run that saved it."
            )

    def _check_init(self, incompatible, shapes):
        # BatchNorm fills a missing num_batches_tracked itself; it is never reported missing
        expected = {k for k in self.model.state_dict() if not k.endswith("num_batches_tracked")}
        skipped = {k for k, _, _ in incompatible.incorrect_shapes}
        not_loaded = set(incompatible.missing_keys) | skipped
        if expected and not_loaded >= expected:
            raise CheckpointMismatchError(
                f"Checkpoint {self._current_path} ({self.source}) loads no parameter of the model "
                f"({self._model_name()}): its keys ({listed(shapes, 5)}) match none of the model's "
                f"({listed(expected, 5)}). Is it the right file for this config?"
            )
        if skipped:
            self.logger.warning(
                f"{self.source}: {len(skipped)} parameters of {self._current_path} have another shape and are "
                f"trained from scratch: {listed(skipped)}"
            )

    # ------------------------------------------------------------------ resuming
    def has_checkpoint(self):
        return super().has_checkpoint() or bool(self._checkpoint_files())

    def named_checkpoint(self):
        """The file `last_checkpoint` names, or "" when it is missing or empty."""
        tag = os.path.join(self.save_dir, LAST_CHECKPOINT)
        try:
            with open(tag) as f:
                name = f.read().strip()
        except OSError:
            return ""
        return os.path.join(self.save_dir, name) if name else ""

    def _checkpoint_files(self):
        """The .pth files of save_dir, newest first."""
        if not self.save_dir or not os.path.isdir(self.save_dir):
            return []
        files = [os.path.join(self.save_dir, f) for f in os.listdir(self.save_dir) if f.endswith(".pth")]
        return sorted((f for f in files if os.path.isfile(f)), key=os.path.getmtime, reverse=True)

    def resume_or_load(self, path, *, resume=True):
        """
        resume=True and a checkpoint in save_dir: load it with every checkpointable (strict).
        The file named by `last_checkpoint` comes first; when it is missing, empty or damaged,
        the newest intact .pth of save_dir is used, with a warning naming what was skipped.
        Otherwise: initialise the model from `path` (MODEL.WEIGHTS, verify "init").
        """
        if not (resume and self.has_checkpoint()):
            if not path:
                self.logger.info("No checkpoint found. Initializing model from scratch")
                return {}
            return self.load_verified(path, verify="init", source="MODEL.WEIGHTS", checkpointables=[])
        named = self.named_checkpoint()
        candidates = [named] if named and os.path.isfile(named) else []
        candidates += [f for f in self._checkpoint_files() if f not in candidates]
        skipped = []
        if not named:
            skipped.append(f"{os.path.join(self.save_dir, LAST_CHECKPOINT)} (missing or empty)")
        elif not os.path.isfile(named):
            skipped.append(f"{named} (named by {LAST_CHECKPOINT}, does not exist)")
        for candidate in candidates:
            try:
                checkpoint = self._load_file(candidate)
            except CheckpointReadError as e:
                skipped.append(f"{candidate} ({e.__cause__.__class__.__name__}: {e.__cause__})")
                continue
            if skipped:
                self.logger.warning(
                    f"--resume: skipped {'; '.join(skipped)}. Resuming from {candidate}, the newest intact "
                    f"checkpoint in {self.save_dir}."
                )
            return self._load_checkpoint_dict(candidate, checkpoint)
        raise CheckpointReadError(
            f"--resume: no intact checkpoint in {self.save_dir}: {'; '.join(skipped)}. Move the folder aside "
            "(or set OUTPUT_DIR) and train without --resume to start over."
        )

    def _load_checkpoint_dict(self, path, checkpoint):
        """fvcore's load() for an already read checkpoint: the model (strict), then every checkpointable."""
        self.logger.info(f"[Checkpointer] Loading from {path} ...")
        self.verify, self.source, self._current_path = "strict", "--resume", path
        try:
            incompatible = self._load_model(checkpoint)
            self._log_incompatible_keys(incompatible)
        finally:
            self.verify, self.source = None, "checkpoint"
        for key in self.checkpointables:
            if key in checkpoint:
                self.logger.info(f"Loading {key} from {path} ...")
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
        return checkpoint
