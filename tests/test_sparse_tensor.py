"""SparseSpikeTensor checks, duplicate rule, sparse BatchNorm, global pooling, integer spike and sparse LIF."""

import pytest
import torch
from torch import nn

from spikelib.functional.lif import lif
from spikelib.sparse import (IntegerSpike, SparseBatchNorm, SparseLIF, SparseSpikeTensor, global_avg_pool,
                             global_max_pool, integer_spike)


pytestmark = pytest.mark.usefixtures("one_thread")


def coords_of(*rows):
    return torch.tensor(rows, dtype=torch.long)


def test_dense_roundtrip():
    c = coords_of((0, 1, 2, 3), (1, 0, 0, 0), (1, 3, 1, 2))
    f = torch.randn(3, 2)
    x = SparseSpikeTensor(f, c, (4, 3, 4))
    d = x.dense()
    assert d.shape == (2, 2, 4, 3, 4)
    assert torch.equal(d[0, :, 1, 2, 3], f[0]) and torch.equal(d[1, :, 3, 1, 2], f[2])
    assert int((d != 0).any(1).sum()) == 3
    xt = SparseSpikeTensor(torch.randn(5, 3, 2), c, (4, 3, 4))
    assert xt.dense().shape == (5, 2, 2, 4, 3, 4) and xt.multistep


def test_bad_coordinates():
    f = torch.randn(2, 1)
    with pytest.raises(ValueError, match="outside spatial_shape"):
        SparseSpikeTensor(f, coords_of((0, 0, 0, 0), (0, 4, 0, 0)), (4, 4, 4))
    with pytest.raises(ValueError, match="axis z"):
        SparseSpikeTensor(f, coords_of((0, 0, 0, 0), (0, 0, 0, 9)), (4, 4, 4))
    with pytest.raises(ValueError, match="non-negative"):
        SparseSpikeTensor(f, coords_of((0, 0, -1, 0), (0, 0, 0, 0)), (4, 4, 4))
    with pytest.raises(ValueError, match="non-negative"):
        SparseSpikeTensor(f, coords_of((-1, 0, 1, 0), (0, 0, 0, 0)), (4, 4, 4))
    with pytest.raises(TypeError, match="integer tensor"):
        SparseSpikeTensor(f, torch.tensor([[0, 0.5, 0, 0], [0, 1.0, 0, 0]]), (4, 4, 4))
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        SparseSpikeTensor(f, torch.zeros(2, 3, dtype=torch.long), (4, 4, 4))
    with pytest.raises(ValueError, match="must match"):
        SparseSpikeTensor(torch.randn(3, 1), coords_of((0, 0, 0, 0), (0, 1, 0, 0)), (4, 4, 4))
    with pytest.raises(ValueError, match="batch_size is 1"):
        SparseSpikeTensor(f, coords_of((0, 0, 0, 0), (1, 1, 0, 0)), (4, 4, 4), batch_size=1)
    with pytest.raises(ValueError, match="spatial_shape"):
        SparseSpikeTensor(f, coords_of((0, 0, 0, 0), (0, 1, 0, 0)), (4, 0, 4))
    with pytest.raises(TypeError, match="floating-point"):
        SparseSpikeTensor(torch.ones(2, 1, dtype=torch.long), coords_of((0, 0, 0, 0), (0, 1, 0, 0)), (4, 4, 4))
    with pytest.raises(ValueError, match="features must be"):
        SparseSpikeTensor(torch.randn(2), coords_of((0, 0, 0, 0), (0, 1, 0, 0)), (4, 4, 4))


def test_duplicates_error_or_sum():
    c = coords_of((0, 1, 1, 1), (0, 2, 2, 2), (0, 1, 1, 1), (1, 1, 1, 1))
    f = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    with pytest.raises(ValueError, match="duplicate sites.*duplicates='sum'"):
        SparseSpikeTensor(f, c, (4, 4, 4))
    x = SparseSpikeTensor(f, c, (4, 4, 4), duplicates="sum")
    assert x.num_sites == 3
    # merged == scatter-add of the inputs on the dense grid
    dense = torch.zeros(2, 1, 4, 4, 4)
    for (b, i, j, k), v in zip(c.tolist(), f):
        dense[b, :, i, j, k] += v
    assert torch.equal(x.dense(), dense)
    xt = SparseSpikeTensor(f.T.unsqueeze(-1).expand(2, 4, 1).contiguous(), c, (4, 4, 4), duplicates="sum")
    assert xt.features.shape == (2, 3, 1)
    with pytest.raises(ValueError, match="duplicates must be"):
        SparseSpikeTensor(f, c, (4, 4, 4), duplicates="mean")


def test_to_casts_features_and_keeps_coordinates():
    x = SparseSpikeTensor(torch.randn(2, 3), coords_of((0, 0, 0, 0), (0, 1, 0, 0)), (4, 4, 4))
    y = x.to(torch.float64)
    assert y.features.dtype == torch.float64 and torch.equal(y.coords, x.coords) and y.coords.dtype == torch.int64
    assert y.spatial_shape == x.spatial_shape and y.batch_size == 1
    with pytest.raises(TypeError, match="floating point"):
        x.to(torch.int32)


def test_replace_features_checks():
    x = SparseSpikeTensor(torch.randn(2, 3), coords_of((0, 0, 0, 0), (0, 1, 0, 0)), (4, 4, 4))
    with pytest.raises(ValueError, match="N = 2"):
        x.replace_features(torch.randn(3, 3))


def test_sparse_batchnorm_equals_batchnorm1d():
    c = torch.stack([torch.zeros(50, dtype=torch.long), *torch.randperm(1000)[:50].div(
        torch.tensor([[100], [10], [1]]), rounding_mode="floor") % 10])
    x = SparseSpikeTensor(torch.randn(50, 4) * 3 + 1, c.T.contiguous(), (10, 10, 10))
    bn, ref = SparseBatchNorm(4, eps=1e-3, momentum=0.01), nn.BatchNorm1d(4, eps=1e-3, momentum=0.01)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2), bn.bias.uniform_(-1, 1)
    ref.load_state_dict(bn.state_dict())
    f1 = x.features.clone().requires_grad_(True)
    f2 = x.features.clone().requires_grad_(True)
    y = bn(x.replace_features(f1)).features
    y_ref = ref(f2)
    torch.testing.assert_close(y, y_ref)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    torch.testing.assert_close(f1.grad, f2.grad)
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    bn.eval(), ref.eval()
    torch.testing.assert_close(bn(x).features, ref(x.features))
    # multi-step: statistics over T * N entries
    xt = x.replace_features(torch.randn(3, 50, 4))
    bn.train(), ref.train()
    torch.testing.assert_close(bn(xt).features, ref(xt.features.reshape(-1, 4)).reshape(3, 50, 4))
    with pytest.raises(ValueError, match="expects 5"):
        SparseBatchNorm(5)(x)


def test_global_pooling_per_batch_item():
    c = coords_of((0, 0, 0, 0), (2, 1, 0, 0), (0, 1, 1, 1), (2, 3, 3, 3), (1, 2, 2, 2), (0, 3, 0, 1))
    f = torch.randn(6, 3, requires_grad=True)
    x = SparseSpikeTensor(f, c, (4, 4, 4))
    avg, mx = global_avg_pool(x), global_max_pool(x)
    for b, rows in enumerate([[0, 2, 5], [4], [1, 3]]):
        torch.testing.assert_close(avg[b], f[rows].mean(0))
        torch.testing.assert_close(mx[b], f[rows].max(0).values)
    (avg.sum() + mx.sum()).backward()
    assert f.grad is not None
    xt = SparseSpikeTensor(torch.randn(2, 6, 3), c, (4, 4, 4))
    torch.testing.assert_close(global_avg_pool(xt)[1], global_avg_pool(xt.replace_features(xt.features[1])))
    torch.testing.assert_close(global_max_pool(xt)[0], global_max_pool(xt.replace_features(xt.features[0])))
    empty_item = SparseSpikeTensor(torch.randn(2, 3), coords_of((0, 0, 0, 0), (2, 0, 0, 0)), (4, 4, 4))
    with pytest.raises(ValueError, match=r"batch items \[1\]"):
        global_avg_pool(empty_item)


def test_integer_spike_forward_and_straight_through():
    x = torch.tensor([-1.0, 0.0, 0.2, 0.49, 0.5, 1.5, 2.6, 3.9, 4.0, 7.0], requires_grad=True)
    s = integer_spike(x, 4)
    assert s.tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 4, 4]
    s.sum().backward()
    assert x.grad.tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    assert integer_spike(torch.tensor([2.6]), 2).item() == 2
    with pytest.raises(ValueError, match="max_spikes"):
        IntegerSpike(0)
    sp = SparseSpikeTensor(torch.tensor([[0.7], [5.0]]), coords_of((0, 0, 0, 0), (0, 1, 0, 0)), (2, 2, 2))
    assert IntegerSpike(4)(sp).features.flatten().tolist() == [1.0, 4.0]


def test_sparse_lif_equals_functional_lif():
    c = coords_of((0, 0, 0, 0), (0, 1, 0, 0), (1, 1, 1, 1))
    f = torch.rand(6, 3, 2) * 2
    x = SparseSpikeTensor(f, c, (2, 2, 2))
    out = SparseLIF(tau=2.0, v_threshold=1.0)(x)
    assert torch.equal(out.features, lif(f, tau=2.0, v_threshold=1.0).spikes)
    assert torch.equal(out.coords, c)
    with pytest.raises(ValueError, match=r"\[T, N, C\]"):
        SparseLIF()(x.replace_features(f[0]))
