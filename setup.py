#!/usr/bin/env python
"""wss_d2: weakly supervised semantic segmentation methods as a detectron2 extension.

torch, torchvision and detectron2 are not listed in install_requires on purpose: pip would
replace a user's CUDA build of torch, and detectron2 is not on PyPI. `python tools/install.py`
installs all three the way that works here (see README.md).
"""
from setuptools import find_packages, setup

setup(
    name="wss_d2",
    version="0.1.0",
    description="Weakly supervised semantic segmentation methods on detectron2",
    packages=find_packages(include=("wss_d2", "wss_d2.*")),
    python_requires=">=3.8",
    install_requires=[
        "numpy",
        "Pillow",
        "scipy",
        "opencv-python-headless",
        "pycocotools",
        "fvcore",
        "tabulate",
        "tensorboard",
        "psutil",
        "pydensecrf2",  # provides the `pydensecrf` module (dense CRF)
        "h5py",  # COCO-Stuff-10K annotations are MATLAB v7.3 (HDF5) files
        "scikit-image",  # skeletons for simulated scribbles
        "cityscapesscripts",  # Cityscapes labelTrainIds generation
    ],
    extras_require={"test": ["pytest", "torchmetrics"]},
)
