import os
import subprocess
import sys
import time

import pytest

from .conftest import REPO, load_script


install_detectron2 = load_script("tools/install_detectron2.py")


@pytest.mark.parametrize(
    "before, after",
    [
        ("x = np.array(a, dtype=np.int)", "x = np.array(a, dtype=int)"),
        ("m.astype(np.bool)", "m.astype(bool)"),
        ("np.full(3, np.nan, dtype=np.float)", "np.full(3, np.nan, dtype=float)"),
        ("np.int64(1) + np.float32(2)", "np.int64(1) + np.float32(2)"),
        ("np.bool_(True)", "np.bool_(True)"),
    ],
)
def test_numpy_alias_fix(before, after):
    assert install_detectron2.NUMPY_ALIAS.sub(r"\1", before) == after


# Text that the real files hold besides what is patched: transform.py already uses BILINEAR
# elsewhere, so "is the new text present?" alone cannot tell that a file is patched.
_UNRELATED = "import numpy as np\nresize = dict(interp=Image.BILINEAR)\n"


def _fake_sdist(root):
    """Files holding the text that each patch replaces, amid unrelated code."""
    contents = {}
    for rel_path, old, _, _ in install_detectron2.PATCHES:
        contents[rel_path] = contents.get(rel_path, _UNRELATED) + old + "\n"
    for rel_path in install_detectron2.NUMPY_ALIAS_FILES:
        contents[rel_path] = contents.get(rel_path, "") + "a = np.zeros(2, dtype=np.int)\n"
    for rel_path, text in contents.items():
        path = os.path.join(root, rel_path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return contents


def _snapshot(root, rel_paths):
    return {p: open(os.path.join(root, p)).read() for p in rel_paths}


def test_patches_apply_once_and_are_idempotent(tmp_path):
    contents = _fake_sdist(str(tmp_path))
    install_detectron2.patch_source(str(tmp_path))
    patched = _snapshot(str(tmp_path), contents)
    for rel_path, old, new, _ in install_detectron2.PATCHES:
        assert new in patched[rel_path] and old not in patched[rel_path], rel_path
    assert "interp=Image.LINEAR" not in patched["detectron2/data/transforms/transform.py"]
    assert "try:\n    from detectron2 import _C" in patched["detectron2/layers/deform_conv.py"]
    assert 'backend="NCCL" if has_gpu else "GLOO"' in patched["detectron2/engine/launch.py"]
    assert "np.int)" not in patched["detectron2/data/build.py"]
    install_detectron2.patch_source(str(tmp_path))
    assert _snapshot(str(tmp_path), contents) == patched


def test_patch_refuses_unexpected_source(tmp_path):
    _fake_sdist(str(tmp_path))
    with open(tmp_path / "detectron2" / "data" / "transforms" / "transform.py", "w") as f:
        f.write("nothing to patch here\n")
    with pytest.raises(RuntimeError, match="transform.py"):
        install_detectron2.patch_source(str(tmp_path))


def test_second_install_run_changes_nothing():
    """The README commands start with tools/install.py; on a set-up machine it is a no-op."""
    start = time.time()
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "install.py")], capture_output=True, text=True
    )
    elapsed = time.time() - start
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "keeping torch/torchvision" in output
    assert "nothing to do" in output
    assert "is installed (editable) from this checkout" in output
    assert "Successfully installed" not in output
    assert elapsed < 60


def test_installed_detectron2_carries_the_current_patch_level():
    """An install patched by an older patch list is detected (and re-patched by the next run)."""
    assert install_detectron2.installed_patch_level() == install_detectron2.patch_level()
    from detectron2.data import common

    source = open(common.__file__).read()
    assert "sample(sorted(self._fallback_candidates)" in source  # Python 3.11 retry fix
