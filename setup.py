#!/usr/bin/env python
"""wss_d2: weakly supervised semantic segmentation methods as a detectron2 extension.

torch, torchvision and detectron2 are not listed in install_requires on purpose: pip would
replace a user's CUDA build of torch, and detectron2 is not on PyPI. `python tools/install.py`
installs all three the way that works here (see README.md).

install_requires is what `import wss_d2` and training need; the "datasets" extra is what only
the dataset preparation scripts use (datasets/README.md says which script needs which).
"""
from setuptools import find_packages, setup

DATASETS_REQUIRES = [
    "h5py",  # COCO-Stuff-10K annotations are MATLAB v7.3 (HDF5) files
    "cityscapesscripts",  # Cityscapes labelTrainIds generation
    "tqdm",  # progress of the preparation loops (fvcore installs it too)
]

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
        "pydensecrf2",  # provides the `pydensecrf` module (dense CRF, imported where it runs)
        "scikit-image",  # skeletons for simulated scribbles; Felzenszwalb fallback over-segmentations (SPML)
        "timm",  # VisionTransformer / Block / Attention of the MCC ViT backbone (DeiT-B/16 weights load as is)
    ],
    extras_require={
        "datasets": DATASETS_REQUIRES,
        # the tests cover the preparation scripts too
        "test": ["pytest", "torchmetrics", *DATASETS_REQUIRES],
    },
)
