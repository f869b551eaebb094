#!/usr/bin/env python
"""
Install detectron2 0.6 as pure Python, from the `pb1-detectron2==0.6` sdist on PyPI.

detectron2 is not on PyPI and its official install builds from its git repository, which
these machines cannot reach. The `pb1-detectron2` sdist carries the v0.6 `detectron2/`
package byte for byte (minus the C++/CUDA sources), so we verify its sha256, apply the
small compatibility fixes that upstream detectron2 made after 0.6, and install it without
extension modules. Semantic segmentation needs none of the compiled ops.

Idempotent: if `import detectron2` already works (a user's own 0.6+ build, or a previous
run of this script) nothing is downloaded or changed.

Usage: python tools/install_detectron2.py [--force]
"""
import argparse
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile

SDIST_REQUIREMENT = "pb1-detectron2==0.6"
SDIST_NAME = "pb1-detectron2-0.6.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
MIN_VERSION = (0, 6)

# detectron2's install_requires minus black==21.4b2 (a formatter pin, unused at run time).
RUNTIME_REQUIREMENTS = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "omegaconf>=2.1",
    "hydra-core>=1.1",
]

_C_IMPORT = "\nfrom detectron2 import _C\n"  # at column 0, so not found again once indented
_C_IMPORT_TOLERANT = (
    "\ntry:\n"
    "    from detectron2 import _C\n"
    "except ImportError:  # built without extensions: only rotated/deformable ops need _C\n"
    "    _C = None\n"
)

# (file, old, new, why). Each `old` occurs once in the pristine sdist and not in `new`, so a
# file holding `new` and no `old` is already patched: applying twice is a no-op.
PATCHES = [
    ("setup.py", "ext_modules=get_extensions(),", "ext_modules=[],",
     "the C++/CUDA sources are not in the sdist; build pure Python"),
    ("detectron2/layers/rotated_boxes.py", _C_IMPORT, _C_IMPORT_TOLERANT, "optional _C"),
    ("detectron2/layers/roi_align_rotated.py", _C_IMPORT, _C_IMPORT_TOLERANT, "optional _C"),
    ("detectron2/layers/deform_conv.py", _C_IMPORT, _C_IMPORT_TOLERANT, "optional _C"),
    ("detectron2/evaluation/fast_eval_api.py", _C_IMPORT, _C_IMPORT_TOLERANT, "optional _C"),
    ("detectron2/data/transforms/transform.py", "interp=Image.LINEAR", "interp=Image.BILINEAR",
     "Pillow 10 removed the LINEAR alias"),
    # Upstream launch(): GLOO when there is no GPU, so multi-process CPU runs work.
    ("detectron2/engine/launch.py",
     '    assert torch.cuda.is_available(), "cuda is not available. Please check your installation."\n',
     "    has_gpu = torch.cuda.is_available()\n",
     "CPU distributed training"),
    ("detectron2/engine/launch.py", 'backend="NCCL",', 'backend="NCCL" if has_gpu else "GLOO",',
     "CPU distributed training"),
    ("detectron2/engine/launch.py",
     "    assert num_gpus_per_machine <= torch.cuda.device_count()\n"
     "    torch.cuda.set_device(local_rank)\n",
     "    if has_gpu:\n"
     "        assert num_gpus_per_machine <= torch.cuda.device_count()\n"
     "        torch.cuda.set_device(local_rank)\n",
     "CPU distributed training"),
    # A mapper returning None (an image to skip) makes MapDataset draw another index with
    # random.sample(set), which Python 3.11 refuses.
    ("detectron2/data/common.py", "self._rng.sample(self._fallback_candidates, k=1)[0]",
     "self._rng.sample(sorted(self._fallback_candidates), k=1)[0]", "Python 3.11 random.sample"),
]

# numpy 1.24 removed the np.int / np.float / np.bool aliases; upstream uses the builtins.
NUMPY_ALIAS_FILES = [
    "detectron2/data/build.py",
    "detectron2/evaluation/sem_seg_evaluation.py",
    "detectron2/evaluation/pascal_voc_evaluation.py",
    "detectron2/structures/masks.py",
    "detectron2/utils/visualizer.py",
    "detectron2/utils/video_visualizer.py",
]
NUMPY_ALIAS = re.compile(r"\bnp\.(int|float|bool)\b")


# Written next to the installed package: an install patched by an older list gets re-patched.
PATCH_LEVEL_FILE = "WSS_D2_PATCH_LEVEL"


def patch_level():
    text = repr((PATCHES, NUMPY_ALIAS_FILES, NUMPY_ALIAS.pattern)).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def installed_patch_level():
    """The patch level recorded in the installed detectron2, or None (not installed by us)."""
    code = (
        "import detectron2, os; p = os.path.join(os.path.dirname(detectron2.__file__), "
        f"{PATCH_LEVEL_FILE!r}); print(open(p).read().strip() if os.path.exists(p) else '')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def record_patch_level():
    code = (
        "import detectron2, os, sys; open(os.path.join(os.path.dirname(detectron2.__file__), "
        f"{PATCH_LEVEL_FILE!r}), 'w').write(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, patch_level()], check=True)


def log(msg):
    print(f"[install_detectron2] {msg}", flush=True)


# Exit status 3: no detectron2; 0: it and the modules wss_d2 uses import; else: broken.
_PROBE = """
import sys
try:
    import detectron2
except ImportError:
    sys.exit(3)
print(detectron2.__version__, flush=True)
import detectron2.data, detectron2.engine, detectron2.evaluation, detectron2.projects.deeplab
"""


def probe():
    """(version tuple or None, import error of its modules or None), in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True)
    if proc.returncode == 3:
        return None, None
    numbers = re.findall(r"\d+", proc.stdout)[:2]
    version = tuple(int(n) for n in numbers) if numbers else (0,)
    error = None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]
    return version, error


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pip(*args):
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def patch_source(src_dir):
    for rel_path, old, new, why in PATCHES:
        path = os.path.join(src_dir, rel_path)
        with open(path) as f:
            text = f.read()
        count = text.count(old)
        if count == 0 and new in text:
            continue
        if count != 1:
            raise RuntimeError(f"{rel_path}: expected one occurrence of {old!r} to patch ({why})")
        with open(path, "w") as f:
            f.write(text.replace(old, new))
    for rel_path in NUMPY_ALIAS_FILES:
        path = os.path.join(src_dir, rel_path)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(NUMPY_ALIAS.sub(r"\1", text))


def install(work_dir):
    # pip runs the sdist's setup.py (which imports torch) to read metadata: no build isolation.
    pip("download", "--no-deps", "--no-build-isolation", "-d", work_dir, SDIST_REQUIREMENT)
    sdist = os.path.join(work_dir, SDIST_NAME)
    actual = sha256_of(sdist)
    if actual != SDIST_SHA256:
        raise RuntimeError(f"{sdist}: sha256 {actual} does not match the pinned {SDIST_SHA256}")
    with tarfile.open(sdist) as tar:
        # the "data" filter refuses links and absolute paths; older Pythons lack it
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(work_dir, **safe)
    src_dir = os.path.join(work_dir, SDIST_NAME[: -len(".tar.gz")])
    patch_source(src_dir)
    pip("install", *RUNTIME_REQUIREMENTS)
    pip("install", "--no-deps", "--no-build-isolation", src_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="reinstall even if importable")
    args = parser.parse_args()

    version, error = probe()
    if version is not None and version >= MIN_VERSION and not args.force:
        if error:
            raise SystemExit(
                f"detectron2 {'.'.join(map(str, version))} imports, but its modules do not: {error}\n"
                "Repair that installation, or rerun with --force to replace it."
            )
        level = installed_patch_level()
        if level is None or level == patch_level():
            log(f"detectron2 {'.'.join(map(str, version))} is importable; nothing to do")
            return
        log("detectron2 was patched by an older wss_d2 patch list; reinstalling it")
    if version is not None and version < MIN_VERSION:
        log(f"detectron2 {version} is older than 0.6; replacing it")
    with tempfile.TemporaryDirectory(prefix="wss_d2_detectron2_") as work_dir:
        install(work_dir)
    record_patch_level()
    version, error = probe()
    if version is None or error:
        raise SystemExit(f"detectron2 was installed but does not import: {error}")
    log(f"installed detectron2 {'.'.join(map(str, version))}")


if __name__ == "__main__":
    main()
