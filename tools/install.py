#!/usr/bin/env python
"""
The one install step of wss_d2; both README commands start with it.

Into the Python that runs this script it installs, each only when missing:
  1. torch + torchvision: a working pair is kept (e.g. a user's own CUDA build); otherwise
     the registry's torch 2.14 / torchvision 0.29 (the CPU-only torch 2.13 wheel that pip
     finds on these machines cannot run torchvision);
  2. detectron2 0.6 through tools/install_detectron2.py (skipped if importable);
  3. wss_d2 itself, editable, with its requirements from setup.py (dense CRF, OpenCV, ...).

A second run on a set-up machine changes nothing and takes a few seconds.

Usage: python tools/install.py
"""
import argparse
import hashlib
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_PAIR = ["torch==2.14.*", "torchvision==0.29.*"]
STAMP = os.path.join(REPO, ".wss_d2_install_stamp")


def log(msg):
    print(f"[install] {msg}", flush=True)


def python_ok(code):
    """Run `code` in a fresh interpreter outside the repo (so the checkout does not shadow)."""
    proc = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True)
    return proc.returncode == 0, proc.stdout.strip()


def pip(*args):
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def ensure_torch():
    # A torchvision op proves that torchvision's compiled ops match this torch.
    ok, versions = python_ok(
        "import torch, torchvision; from torchvision.ops import nms; "
        "nms(torch.zeros(1, 4), torch.ones(1), 0.5); "
        "print(torch.__version__, torchvision.__version__)"
    )
    if ok:
        log(f"keeping torch/torchvision {versions}")
        return
    log(f"installing {' '.join(TORCH_PAIR)}")
    pip("install", *TORCH_PAIR)


def ensure_wss_d2():
    with open(os.path.join(REPO, "setup.py"), "rb") as f:
        stamp = hashlib.sha256(f.read() + sys.executable.encode()).hexdigest()
    ok, location = python_ok("import wss_d2, os; print(os.path.dirname(wss_d2.__path__[0]))")
    up_to_date = os.path.exists(STAMP) and open(STAMP).read() == stamp
    if ok and os.path.samefile(location, REPO) and up_to_date:
        log("wss_d2 is installed (editable) from this checkout with its requirements")
        return
    log("installing wss_d2 (editable) and its requirements")
    pip("install", "-e", f"{REPO}[test]")
    with open(STAMP, "w") as f:
        f.write(stamp)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[1] + "\n\n" + __doc__.split("\n\n")[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)  # no options: --help prints this and installs nothing
    start = time.time()
    ensure_torch()
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "install_detectron2.py")], check=True)
    ensure_wss_d2()
    log(f"done in {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()
