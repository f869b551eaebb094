"""The resumable training stream: batch i depends only on (seed, i)."""
import itertools
import random

import numpy as np
import pytest
import torch

from wss_d2.data.train_loader import ResumableTrainLoader, isolated_rng

DATASET = [{"file_name": f"img{i}.png", "index": i} for i in range(10)]


def _augment(record):
    """A mapper that draws from all three global generators, as augmentations do."""
    if record["index"] == 3:
        return None  # skipped, like an image with an empty weak label
    return (record["index"], float(np.random.rand()), random.random(), float(torch.rand(1)))


def _batches(start_iter=0, num_workers=0, seed=7, count=8):
    loader = ResumableTrainLoader(DATASET, _augment, total_batch_size=4, seed=seed, num_workers=num_workers)
    loader.start_iter = start_iter
    return list(itertools.islice(iter(loader), count))


def test_a_resumed_stream_continues_the_uninterrupted_one():
    whole = _batches(count=8)
    assert _batches(start_iter=5, count=3) == whole[5:]


def test_the_stream_does_not_depend_on_the_number_of_workers():
    assert _batches(num_workers=2) == _batches(num_workers=0)


def test_every_image_once_per_epoch_and_skipped_images_replaced_the_same_way():
    whole = _batches(count=5)  # 20 positions: two epochs of 10
    indices = [sample[0] for batch in whole for sample in batch]
    assert 3 not in indices and len(indices) == 20
    for epoch in (indices[:10], indices[10:]):
        # 9 of the 10 images once; image 3's place holds a replacement
        assert set(range(10)) - {3} <= set(epoch) and len(epoch) == 10
    assert whole != _batches(seed=8, count=5)


def test_mapping_leaves_the_main_process_generators_as_they_were():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _batches(count=2)
    assert torch.equal(torch.rand(3), expected)
    with isolated_rng(5):
        inside = np.random.rand()
    with isolated_rng(5):
        assert np.random.rand() == inside


def test_batch_size_must_split_over_processes():
    with pytest.raises(ValueError, match="IMS_PER_BATCH"):
        ResumableTrainLoader(DATASET, _augment, total_batch_size=0, seed=0)
    with pytest.raises(ValueError, match="is empty"):
        ResumableTrainLoader([], _augment, total_batch_size=2, seed=0, dataset_names=["nothing"])
