"""
Cityscapes fine semantic segmentation in trainIds (docs/datasets.md §8): 19 classes,
255 = not evaluated; and AGMM-style click labels (20/50/100 clicks per training image).

Layout under `<datasets root>/cityscapes/`:
    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png
    {20,50,100}clicks/<city>_<seq>_<frame>_gtFine_labelTrainIds.png      (flat folders)
Click PNGs: trainIds 0..18 on clicked pixels, 19 (= K, AGMM's "unlabelled") elsewhere, 255 void.

Registered names (detectron2 owns `cityscapes_fine_sem_seg_{train,val,test}`, whose evaluator
needs cityscapesscripts and the labelIds GT):
    cityscapes_wss_sem_seg_{train,val}               full trainId labels, evaluator "sem_seg"
    cityscapes_fine_sem_seg_train_{20,50,100}clicks  sparse_sem_seg_file_name, no GT
"""
import os

from detectron2.data.datasets.builtin_meta import CITYSCAPES_CATEGORIES

from ..readers import read_image_size
from .loading import require_dataset_dir, require_files
from .paths import get_datasets_root
from .registration import IGNORE_LABEL, record_dataset_roots, register_sem_seg_dataset

CITYSCAPES_CLASSES = tuple(c["name"] for c in sorted(CITYSCAPES_CATEGORIES, key=lambda c: c["trainId"]))
CITYSCAPES_COLORS = [list(c["color"]) for c in sorted(CITYSCAPES_CATEGORIES, key=lambda c: c["trainId"])]
CLICK_COUNTS = (20, 50, 100)
CLICKS_UNLABELED_VALUE = len(CITYSCAPES_CLASSES)  # 19, AGMM's convention
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelTrainIds.png"
CITYSCAPES_DATASET_NAMES = ("cityscapes_wss_sem_seg_train", "cityscapes_wss_sem_seg_val") + tuple(
    f"cityscapes_fine_sem_seg_train_{n}clicks" for n in CLICK_COUNTS
)


def find_cityscapes_root(datasets_root=None):
    return require_dataset_dir(os.path.join(datasets_root or get_datasets_root(), "cityscapes"), "Cityscapes")


def list_cityscapes_images(cityscapes_root, split):
    """
    Dicts (file_name, image_id = <city>_<seq>_<frame>, height, width) of
    leftImg8bit/<split>/, cities and files in sorted order.
    """
    image_root = require_dataset_dir(os.path.join(cityscapes_root, "leftImg8bit", split), "Cityscapes images")
    dicts = []
    for city in sorted(os.listdir(image_root)):
        city_dir = os.path.join(image_root, city)
        if not os.path.isdir(city_dir):
            continue
        for file in sorted(os.listdir(city_dir)):
            file_name = os.path.join(city_dir, file)
            if not file.endswith(IMAGE_SUFFIX):
                raise ValueError(
                    f"Unexpected file in {city_dir}: {file_name} (Cityscapes images end in {IMAGE_SUFFIX})"
                )
            height, width = read_image_size(file_name)
            dicts.append(
                {
                    "file_name": file_name,
                    "image_id": file[: -len(IMAGE_SUFFIX)],
                    "height": height,
                    "width": width,
                }
            )
    if not dicts:
        raise FileNotFoundError(f"No Cityscapes images (<city>/*{IMAGE_SUFFIX}) under {image_root}")
    return dicts


def load_cityscapes_sem_seg(cityscapes_root, split):
    """Dicts of `split` with sem_seg_file_name = gtFine/<split>/<city>/<stem>_gtFine_labelTrainIds.png."""
    dicts = list_cityscapes_images(cityscapes_root, split)
    gt_root = os.path.join(cityscapes_root, "gtFine", split)
    for d in dicts:
        city = os.path.basename(os.path.dirname(d["file_name"]))
        d["sem_seg_file_name"] = os.path.join(gt_root, city, d["image_id"] + LABEL_SUFFIX)
    require_files(
        [d["sem_seg_file_name"] for d in dicts],
        "trainId label maps (cityscapesscripts' createTrainIdLabelImgs.py writes them) of images",
        os.path.join(cityscapes_root, "leftImg8bit", split),
    )
    return dicts


def load_cityscapes_clicks(cityscapes_root, num_clicks, split="train"):
    """Dicts of `split` with sparse_sem_seg_file_name = <num_clicks>clicks/<stem>_gtFine_labelTrainIds.png."""
    clicks_root = os.path.join(cityscapes_root, f"{num_clicks}clicks")
    require_dataset_dir(clicks_root, "Cityscapes click folder")
    dicts = list_cityscapes_images(cityscapes_root, split)
    for d in dicts:
        d["sparse_sem_seg_file_name"] = os.path.join(clicks_root, d["image_id"] + LABEL_SUFFIX)
    require_files(
        [d["sparse_sem_seg_file_name"] for d in dicts],
        "click label maps of images",
        os.path.join(cityscapes_root, "leftImg8bit", split),
    )
    return dicts


def _register(name, load, weak_label, roots, **metadata):
    def loader():
        cityscapes_root = find_cityscapes_root()
        dicts = load(cityscapes_root)
        record_dataset_roots(name, **{key: os.path.join(cityscapes_root, sub) for key, sub in roots.items()})
        return dicts

    register_sem_seg_dataset(
        name,
        loader,
        CITYSCAPES_CLASSES,
        CITYSCAPES_COLORS,
        IGNORE_LABEL,
        background_class=None,
        weak_label=weak_label,
        **metadata,
    )


def register_cityscapes():
    for split in ("train", "val"):
        _register(
            f"cityscapes_wss_sem_seg_{split}",
            lambda root, split=split: load_cityscapes_sem_seg(root, split),
            "full",
            {"image_root": os.path.join("leftImg8bit", split), "sem_seg_root": os.path.join("gtFine", split)},
        )
    for n in CLICK_COUNTS:
        _register(
            f"cityscapes_fine_sem_seg_train_{n}clicks",
            lambda root, n=n: load_cityscapes_clicks(root, n),
            "clicks",
            {"image_root": os.path.join("leftImg8bit", "train"), "sparse_sem_seg_root": f"{n}clicks"},
            sparse_unlabeled_value=CLICKS_UNLABELED_VALUE,
            sparse_void_value=IGNORE_LABEL,
        )


register_cityscapes()
