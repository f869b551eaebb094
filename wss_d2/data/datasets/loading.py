"""Helpers every dataset loader uses: split lists, file checks, pairing images and labels by stem."""
import os

MAX_LISTED_MISSING = 5


def read_split_ids(list_file):
    """
    Image ids of a split list. Accepts every list style of the standard repositories: bare
    ids, `/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`, `<id>.jpg <id>.png`, and
    multi-column relative paths: the id is the first token's basename without extension.
    """
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"Split list not found: {list_file}")
    ids = []
    with open(list_file) as f:
        for line in f:
            tokens = line.split()
            if tokens:
                ids.append(os.path.splitext(os.path.basename(tokens[0]))[0])
    if not ids:
        raise ValueError(f"Split list {list_file} lists no images")
    return ids


def require_files(paths, what, list_file):
    """Raise FileNotFoundError naming the missing `paths` (the first few) and the list that named them."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = "\n  ".join(missing[:MAX_LISTED_MISSING])
        more = len(missing) - MAX_LISTED_MISSING
        raise FileNotFoundError(
            f"{len(missing)} {what} listed in {list_file} are missing:\n  {shown}"
            + (f"\n  ... and {more} more" if more > 0 else "")
        )


def require_dataset_dir(path, dataset):
    """Raise, naming `path` and how to point wss_d2 at the data, if the folder is missing."""
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{dataset} not found: {path} does not exist. Put the dataset there, or point "
            "$WSS_DATASETS (or $DETECTRON2_DATASETS) at the folder that holds it; see "
            "datasets/README.md."
        )
    return path


def _stems(folder, ext):
    return {os.path.splitext(f)[0]: os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(ext)}


def load_paired_sem_seg(image_dir, label_dir, image_ext=".jpg", label_ext=".png"):
    """
    Dicts (file_name, sem_seg_file_name, image_id), sorted by stem, of the images in
    `image_dir` and the label maps in `label_dir` with the same stems. Unlike detectron2's
    `load_sem_seg`, which keeps the intersection, raises naming the unpaired files.
    """
    for folder in (image_dir, label_dir):
        require_dataset_dir(folder, "Dataset folder")
    images, labels = _stems(image_dir, image_ext), _stems(label_dir, label_ext)
    problems = []
    for paths, other, other_dir in ((images, labels, label_dir), (labels, images, image_dir)):
        unpaired = sorted(paths[stem] for stem in paths.keys() - other.keys())
        if unpaired:
            shown = "\n  ".join(unpaired[:MAX_LISTED_MISSING])
            more = len(unpaired) - MAX_LISTED_MISSING
            problems.append(
                f"{len(unpaired)} files have no counterpart in {other_dir}:\n  {shown}"
                + (f"\n  ... and {more} more" if more > 0 else "")
            )
    if problems:
        raise FileNotFoundError("Unpaired images and label maps:\n" + "\n".join(problems))
    if not images:
        raise FileNotFoundError(f"No *{image_ext} images in {image_dir}")
    return [
        {"file_name": images[stem], "sem_seg_file_name": labels[stem], "image_id": stem}
        for stem in sorted(images)
    ]
