import numpy as np
import pytest

from lstmkit.data.sampling import BucketBatches, epoch_batch, rank_slice


def test_epoch_batch_visits_every_example_once_per_epoch():
    n, bs = 10, 4
    stream = np.concatenate([epoch_batch(n, s, bs, seed=3) for s in range(5)])  # 2 epochs
    assert sorted(stream[:10]) == list(range(10))
    assert sorted(stream[10:20]) == list(range(10))
    assert list(stream[:10]) != list(stream[10:20])  # each epoch has its own order


def test_epoch_batch_is_a_function_of_seed_and_step():
    a = epoch_batch(100, 7, 16, seed=1)
    epoch_batch(100, 3, 16, seed=2)
    assert list(a) == list(epoch_batch(100, 7, 16, seed=1))
    assert list(a) != list(epoch_batch(100, 7, 16, seed=2))


def test_rank_slices_concatenate_to_the_batch():
    idx = np.arange(10)
    parts = [rank_slice(idx, r, 3) for r in range(3)]
    assert np.concatenate(parts).tolist() == idx.tolist()
    assert [len(p) for p in parts] == [3, 4, 3]


def test_a_batch_smaller_than_the_world_leaves_no_process_empty():
    assert [rank_slice([7], r, 2).tolist() for r in range(2)] == [[7], [7]]
    assert [rank_slice([1, 2, 3], r, 4).tolist() for r in range(4)] == [[1], [2], [3], [1]]
    assert [rank_slice([1, 2], r, 2).tolist() for r in range(2)] == [[1], [2]]


def test_bucket_batches_cover_each_epoch_within_the_token_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, size=500)
    b = BucketBatches(lengths, max_tokens=200, seed=0)
    ep = b.epoch(0)
    assert sorted(np.concatenate(ep).tolist()) == list(range(500))
    for batch in ep:
        assert lengths[batch].max() * len(batch) <= 200 or len(batch) == 1
    # sorting within pools keeps padding small
    padded = sum(lengths[x].max() * len(x) for x in ep)
    assert padded < 1.3 * lengths.sum()


def test_bucket_batches_step_walks_across_epochs_deterministically():
    lengths = np.arange(1, 101)
    b = BucketBatches(lengths, max_tokens=300, seed=5)
    n0 = len(b.epoch(0))
    first_of_epoch1 = b.batch(n0)
    assert first_of_epoch1.tolist() == b.epoch(1)[0].tolist()
    fresh = BucketBatches(lengths, max_tokens=300, seed=5)
    assert fresh.batch(n0 + 2).tolist() == b.batch(n0 + 2).tolist()


def test_bucket_batches_reject_empty_data():
    with pytest.raises(ValueError, match="empty"):
        BucketBatches([], 10, 0)
