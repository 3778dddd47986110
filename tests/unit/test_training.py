"""Models and datasets: shapes fit, a few SGD steps on one process reduce the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from testbed.spec.schema import CnnSpec, MlpSpec
from testbed.training import datasets, models
from testbed.training.loop import accuracy


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", seed=1)


def test_digits_split_is_seeded_and_disjoint(digits):
    again = datasets.load("digits", seed=1)
    other = datasets.load("digits", seed=2)
    assert np.array_equal(digits.y_test, again.y_test)
    assert not np.array_equal(digits.y_test, other.y_test)
    assert len(digits.x_train) + len(digits.x_test) == 1797
    assert (
        digits.x_train.shape[1:] == (1, 8, 8)
        and 0 <= digits.x_train.min() <= digits.x_train.max() <= 1
    )


def test_digits_are_exactly_scikit_learns(digits):
    """The loader reads scikit-learn's bundled CSV itself (no sklearn import); the
    arrays and the split must be what scikit-learn's own loader gives."""
    from sklearn.datasets import load_digits

    sk = load_digits()
    x = (sk.images / 16.0).astype(np.float32)[:, None, :, :]
    order = np.random.default_rng(1).permutation(len(x))
    cut = int(0.8 * len(x))
    assert np.array_equal(digits.x_train, x[order[:cut]])
    assert np.array_equal(digits.y_test, sk.target[order[cut:]])
    assert digits.y_train.dtype == np.int64 and digits.x_train.dtype == np.float32


def test_shards_partition_the_training_set(digits):
    shards = [set(digits.shard(r, 3).tolist()) for r in range(3)]
    assert set.union(*shards) == set(range(len(digits.x_train)))
    assert sum(len(s) for s in shards) == len(digits.x_train)


def test_sampler_cycles_through_shard_deterministically():
    a = datasets.BatchSampler(np.arange(10), 4, seed=3)
    b = datasets.BatchSampler(np.arange(10), 4, seed=3)
    first = [a.next().tolist() for _ in range(5)]
    assert first == [b.next().tolist() for _ in range(5)]
    assert sorted(first[0] + first[1]) == sorted(
        set(first[0] + first[1])
    )  # no repeats within an epoch


@pytest.mark.parametrize("spec", [MlpSpec(hidden=(32, 16)), CnnSpec(name="cnn", channels=(8, 16))])
def test_model_learns_a_few_steps(digits, spec):
    model = models.build(spec, digits, seed=1)
    same = models.build(spec, digits, seed=1)
    for p, q in zip(model.parameters(), same.parameters()):
        assert torch.equal(p, q)  # every process of a job starts from the same weights
    x, y = torch.from_numpy(digits.x_train[:256]), torch.from_numpy(digits.y_train[:256])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(200):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # ~0.1-0.3 x in practice; 0.5 leaves margin
    # 10 balanced classes: chance is ~0.1; 200 full-batch steps on 256 images reach
    # ~0.8-0.9 on the held-out set, so 0.5 fails only a model that did not learn.
    assert accuracy(model, digits) > 0.5


def test_the_wire_counter_reads_what_an_interface_sent():
    """`bytes_sent` comes from the interface's own transmit counter in the process's
    namespace: sending 100 kB over loopback moves lo's counter by at least that."""
    import socket

    from testbed.training.loop import WireCounter, tx_bytes

    counter = WireCounter("lo")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(100):
            s.sendto(b"x" * 1000, ("127.0.0.1", 9))  # discard port: nothing needs to listen
    assert counter.since_last() >= 100 * (1000 + 28)  # payload + IPv4/UDP headers
    assert tx_bytes("no-such-eth0") is None and WireCounter("no-such-eth0").since_last() is None


def test_a_set_compute_time_is_the_value_or_a_seeded_draw_per_worker():
    from testbed.training.loop import compute_target_s

    assert compute_target_s(None, 1, 0) is None and compute_target_s(40.0, 1, 3) == 0.04
    draws = [compute_target_s((100.0, 200.0), 1, rank) for rank in range(50)]
    assert all(0.1 <= d <= 0.2 for d in draws) and len(set(draws)) == 50
    assert draws == [compute_target_s((100.0, 200.0), 1, rank) for rank in range(50)]
    assert draws != [compute_target_s((100.0, 200.0), 2, rank) for rank in range(50)]


def test_compute_overruns_are_a_fidelity_reason(tmp_path):
    """A job that computed past its set time in more than 10% of its iterations."""
    import pandas as pd

    from testbed.results.fidelity import assess

    its = pd.DataFrame({"job": ["a"] * 10 + ["b"] * 10, "compute_s": [0.05] * 8 + [0.2] * 2
                        + [0.05] * 9 + [0.2], "compute_set_s": [0.05] * 20})  # fmt: skip
    its.to_csv(tmp_path / "iterations.csv", index=False)
    fidelity = assess(tmp_path, [])
    assert fidelity["compute_overruns"] == {"a": 0.2}  # b: 1 of 10 is within the 10%
    assert fidelity["reasons"] == [
        "compute took longer than jobs[].compute_ms: a (20% of iterations)"
    ]
