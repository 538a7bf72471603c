"""The synthetic temporal task: determinism, shapes, the generative structure, argument errors, and that spike
counts carry no class information while spike timing does."""

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spikelib.data import SyntheticTemporalDataset, make_class_orders


def _small(**kw):
    return SyntheticTemporalDataset(kw.pop("n_samples", 40), kw.pop("seed", 0), **kw)


def test_deterministic_by_seed():
    a, b, c = _small(seed=3), _small(seed=3), _small(seed=4)
    xa, ya = a.tensors()
    xb, yb = b.tensors()
    xc, yc = c.tensors()
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, xc)
    # the classes (burst orders) come from task_seed only: equal for train and test sets
    assert a.class_orders == c.class_orders
    assert _small(task_seed=1).class_orders != a.class_orders


def test_shapes_dtypes_and_batches():
    ds = _small(n_samples=23, n_steps=90, n_channels=45)
    x, y = ds[0]
    assert x.shape == (90, 45) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.dim() == 0
    assert set(torch.unique(x).tolist()) <= {0.0, 1.0}
    assert len(ds) == 23
    xb, yb = next(iter(DataLoader(ds, batch_size=8)))
    assert xb.shape == (8, 90, 45) and yb.shape == (8,)
    assert torch.equal(ds[-1][0], ds[22][0])
    with pytest.raises(IndexError):
        ds[23]
    with pytest.raises(TypeError, match="index"):
        ds[1.0]


def test_labels_balanced_and_chance():
    ds = _small(n_samples=103)
    counts = np.bincount(ds.labels.numpy(), minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 103
    assert ds.chance_level == pytest.approx(0.1)


def test_class_orders_are_distinct_permutations_without_reversals():
    for n_classes, n_groups in [(10, 5), (3, 3), (12, 4), (60, 5)]:
        orders = make_class_orders(n_classes, n_groups, task_seed=7)
        assert len(orders) == n_classes
        assert all(sorted(o) == list(range(n_groups)) for o in orders)
        assert len(set(orders)) == n_classes
        assert not any(tuple(reversed(o)) in orders for o in orders)
    assert make_class_orders(10, 5, 2) == make_class_orders(10, 5, 2)
    # the greedy choice keeps the 10 default classes apart: at least 2 of their 4 neighbour pairs differ
    pairs = [{frozenset(p) for p in zip(o, o[1:])} for o in make_class_orders(10, 5, 0)]
    assert min(len(p ^ q) for p, q in itertools.combinations(pairs, 2)) >= 4


def test_generative_structure_without_noise():
    """burst_rate=1, no drops, no noise: every channel fires exactly one burst of L steps, groups in class order."""
    ds = _small(n_samples=30, burst_rate=1.0, drop_prob=0.0, noise_rate=0.0, n_steps=60, max_shift=10,
                burst_length=6, burst_spacing=7, jitter=1)
    x, y = ds.tensors()
    groups = ds.channel_groups()
    for n in range(len(ds)):
        per_channel = x[n].sum(0)
        assert torch.all(per_channel == 6)
        first = x[n].argmax(0).numpy()  # onset of every channel
        onsets = [int(first[groups == g][0]) for g in range(ds.n_groups)]
        assert all((first[groups == g] == onsets[g]).all() for g in range(ds.n_groups))
        order = tuple(int(g) for g in np.argsort(onsets, kind="stable"))
        assert order == ds.class_orders[int(y[n])]
        gaps = np.diff(sorted(onsets))
        assert np.all(np.abs(gaps - 7) <= 2)  # spacing D +- 2 * jitter


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(n_samples=0), ValueError, "n_samples"),
        (dict(n_samples=2.5), TypeError, "n_samples"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(n_classes=1), ValueError, "n_classes"),
        (dict(n_classes=61), ValueError, "n_classes"),
        (dict(n_groups=1), ValueError, "n_groups"),
        (dict(n_channels=3), ValueError, "n_channels"),
        (dict(n_steps=40), ValueError, "n_steps"),
        (dict(burst_rate=1.5), ValueError, "burst_rate"),
        (dict(burst_rate=0.0), ValueError, "burst_rate"),
        (dict(drop_prob=1.0), ValueError, "drop_prob"),
        (dict(noise_rate=-0.1), ValueError, "noise_rate"),
        (dict(noise_rate="0.1"), TypeError, "noise_rate"),
        (dict(jitter=-1), ValueError, "jitter"),
        (dict(burst_length=0), ValueError, "burst_length"),
        (dict(burst_spacing=True), TypeError, "burst_spacing"),
        (dict(max_shift=-2), ValueError, "max_shift"),
        (dict(task_seed=None), TypeError, "task_seed"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, name):
    with pytest.raises(error, match=name):
        _small(**kwargs)


def fit_logistic_regression(f_train, y_train, f_test, y_test, n_classes=10):
    """Multinomial logistic regression (standardised features, small L2, LBFGS); returns (train acc, test acc)."""
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-6
    a, b = (f_train - mu) / sd, (f_test - mu) / sd
    gen = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(a.shape[1], n_classes)
    with torch.no_grad():
        lin.weight.copy_(0.01 * torch.randn(lin.weight.shape, generator=gen))
        lin.bias.zero_()
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(a), y_train) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return ((lin(a).argmax(1) == y_train).float().mean().item(),
                (lin(b).argmax(1) == y_test).float().mean().item())


def test_counts_carry_no_class_information_but_timing_does():
    train, test = SyntheticTemporalDataset(2000, 0), SyntheticTemporalDataset(1000, 1)
    x, y = train.tensors()
    xt, yt = test.tensors()
    # per-channel spike counts: the law of each count is the same for every class -> chance
    _, acc_counts = fit_logistic_regression(x.sum(1), y, xt.sum(1), yt)
    assert acc_counts < 0.16, acc_counts  # chance 0.10; 1000 test samples: sd ~0.01
    # positive control: the same classifier on counts in 8 time bins per channel sees the timing
    def binned(z):
        return z.reshape(z.shape[0], 8, -1, z.shape[2]).sum(2).reshape(z.shape[0], -1)

    _, acc_binned = fit_logistic_regression(binned(x), y, binned(xt), yt)
    assert acc_binned > 0.6, acc_binned
