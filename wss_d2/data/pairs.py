"""
Image pairs for cross-image training (SimFormer's pixel-pair similarity, docs/simformer.md §5).

A partner table lists, for every training image A (by its position in the concatenated
DATASETS.TRAIN), the images that could be its partner, from the whole-image label sets (the GT's
classes: base classes and the novel image tags, never novel pixels):

    single_novel[A][c]  images sharing exactly one novel class with A, that class being c (c ∈ N_A)
    novel_overlap[A]    when |N_A| >= 2: images sharing 0 or >= 2 novel classes with A
    base_overlap[A]     images sharing at least one base class with A

Each list is cut to a random subset of INPUT.PAIRS.MAX_CANDIDATES (500, 50, 50). `PartnerSampler`
draws a partner: with >= 2 novel classes, a focus class c (the one with the fewest candidates with
probability RAREST_FOCUS_PROB, an empty list counting as the cap; otherwise uniform) and a partner
from single_novel[A][c] ("de-confused": the pair shares exactly one novel class); otherwise from
novel_overlap (>= 2 entries) or base_overlap (>= 2 entries). Unlike the original, A is never its
own partner: A is left out of the candidates without editing the table, and an image without any
other candidate gets a uniformly drawn other image.
"""
import logging
import os

import numpy as np
import torch

from .readers import read_label_map

__all__ = ["build_partner_table", "check_partner_table", "load_partner_table", "save_partner_table",
           "PartnerSampler", "image_label_sets"]

logger = logging.getLogger(__name__)
TABLE_VERSION = 1


def image_label_sets(dicts, num_classes, ignore_value=255):
    """(N, K) bool: the classes of each image, from its "image_labels" field or else its GT label map."""
    labels = np.zeros((len(dicts), num_classes), dtype=bool)
    for i, d in enumerate(dicts):
        if d.get("image_labels") is not None:
            values = np.asarray(d["image_labels"], dtype=np.int64).reshape(-1)
        elif d.get("sem_seg_file_name"):
            values = np.unique(read_label_map(d["sem_seg_file_name"]))
            values = values[values != ignore_value]
        else:
            raise ValueError(f"Image {d.get('file_name', i)} has neither image_labels nor sem_seg_file_name: "
                             "the partner table needs each image's classes")
        bad = values[(values < 0) | (values >= num_classes)]
        if len(bad):
            raise ValueError(f"Image {d.get('file_name', i)}: classes {bad.tolist()} outside 0..{num_classes - 1}")
        labels[i, values] = True
    return labels


def _subset(indices, cap, rng):
    if len(indices) > cap:
        indices = np.sort(rng.choice(indices, cap, replace=False))
    return torch.as_tensor(indices, dtype=torch.int32)


def build_partner_table(dataset_names, dicts, num_classes, novel_classes, max_candidates=(500, 50, 50),
                        seed=0, ignore_value=255, chunk=1024):
    """The partner table (a dict of plain types and tensors) of the concatenated `dicts`."""
    novel = sorted(int(c) for c in novel_classes)
    base = [c for c in range(num_classes) if c not in set(novel)]
    labels = image_label_sets(dicts, num_classes, ignore_value)
    novel_sets = labels[:, novel].astype(np.int32)
    base_sets = labels[:, base].astype(np.int32)
    rng = np.random.default_rng(seed)
    cap_single, cap_novel, cap_base = max_candidates
    single_novel, novel_overlap, base_overlap = [], [], []
    for start in range(0, len(dicts), chunk):
        shared_novel = novel_sets[start:start + chunk] @ novel_sets.T
        shared_base = base_sets[start:start + chunk] @ base_sets.T
        for row in range(shared_novel.shape[0]):
            a = start + row
            own = np.flatnonzero(novel_sets[a])
            exactly_one = shared_novel[row] == 1
            single_novel.append({novel[c]: _subset(np.flatnonzero(exactly_one & (novel_sets[:, c] > 0)), cap_single, rng)
                                 for c in own})
            overlap = np.flatnonzero(shared_novel[row] != 1) if len(own) >= 2 else np.zeros(0, dtype=np.int64)
            novel_overlap.append(_subset(overlap, cap_novel, rng))
            base_overlap.append(_subset(np.flatnonzero(shared_base[row] >= 1), cap_base, rng))
    return {
        "version": TABLE_VERSION,
        "datasets": list(dataset_names),
        "novel_classes": novel,
        "num_classes": num_classes,
        "file_names": [d["file_name"] for d in dicts],
        "single_novel": single_novel,
        "novel_overlap": novel_overlap,
        "base_overlap": base_overlap,
    }


def save_partner_table(table, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(table, tmp)
    os.replace(tmp, path)  # a crash never leaves a half-written table under the real name


def load_partner_table(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Partner table {path} (INPUT.PAIRS.TABLE) does not exist: write it with "
                                "tools/build_partner_table.py, or leave INPUT.PAIRS.TABLE empty to build it in memory")
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:
        raise ValueError(f"Partner table {path} (INPUT.PAIRS.TABLE) cannot be read: {e}") from e


def check_partner_table(table, dataset_names, dicts, novel_classes, where="partner table"):
    """A clear error when `table` was built for other datasets, another split or other images."""
    if table.get("version") != TABLE_VERSION:
        raise ValueError(f"{where} has version {table.get('version')}, this wss_d2 reads {TABLE_VERSION}: rebuild it")
    problems = []
    if list(table["datasets"]) != list(dataset_names):
        problems.append(f"datasets {table['datasets']} there, DATASETS.TRAIN {list(dataset_names)} here")
    if list(table["novel_classes"]) != sorted(int(c) for c in novel_classes):
        problems.append(f"novel classes {table['novel_classes']} there, {sorted(int(c) for c in novel_classes)} here")
    if len(table["file_names"]) != len(dicts):
        problems.append(f"{len(table['file_names'])} images there, {len(dicts)} here")
    elif any(a != d["file_name"] for a, d in zip(table["file_names"], dicts)):
        problems.append("the images differ")
    if problems:
        raise ValueError(f"{where} was built for another training set or split ({'; '.join(problems)}): rebuild it "
                         "with tools/build_partner_table.py for this config")


class PartnerSampler:
    """Draws a partner index for an image index with np.random (the loader seeds it per sample)."""

    def __init__(self, table, rarest_focus_prob=0.01, max_single=500):
        self.table = table
        self.num_images = len(table["file_names"])
        if self.num_images < 2:
            raise ValueError("Image pairs need at least 2 training images")
        self.rarest_focus_prob = rarest_focus_prob
        self.max_single = max_single

    def candidates(self, index):
        single = self.table["single_novel"][index]
        if len(single) >= 2:
            classes = sorted(single)
            if np.random.rand() < self.rarest_focus_prob:
                sizes = [len(single[c]) or self.max_single for c in classes]
                focus = classes[int(np.argmin(sizes))]
            else:
                focus = classes[np.random.randint(len(classes))]
            return single[focus]
        for key in ("novel_overlap", "base_overlap"):
            if len(self.table[key][index]) >= 2:
                return self.table[key][index]
        return torch.zeros(0, dtype=torch.int32)

    def __call__(self, index):
        candidates = self.candidates(index)
        candidates = candidates[candidates != index]  # a new tensor: the table is never edited
        if len(candidates):
            return int(candidates[np.random.randint(len(candidates))])
        other = np.random.randint(self.num_images - 1)
        return other + (other >= index)
