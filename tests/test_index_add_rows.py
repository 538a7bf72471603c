"""Operation ``index_add_rows`` (the sparse convolutions' scatter-add): the numba backend is bitwise torch's
``index_add_``, refuses what it cannot run, and is the path the sparse convolutions take on CPU."""

import pytest
import torch

from spikelib.kernels import BackendUnavailableError, backend_calls, reset_backend_calls, select_backend
from spikelib.sparse import SubMConv3d, SparseConv3d, SparseSpikeTensor
from spikelib.sparse import conv as sparse_conv

numba = pytest.importorskip("numba")


def _impl(name, t):
    return select_backend("index_add_rows", name, sparse_conv.RowsRequest(t.device, t.dtype, t.is_contiguous())).impl


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("row_shape", [(16,), (3, 5), (1,)])
def test_numba_is_bitwise_index_add(dtype, row_shape):
    g = torch.Generator().manual_seed(0)
    out = torch.randn((50,) + row_shape, dtype=dtype, generator=g)
    idx = torch.randint(0, 50, (400,), generator=g)  # many duplicates: additions in row order
    src = torch.randn((400,) + row_shape, dtype=dtype, generator=g) * 1e3
    want = out.clone().index_add_(0, idx, src)
    got = out.clone()
    _impl("numba", got)(got, idx, src)
    assert torch.equal(got, want)
    got = out.clone()
    _impl("numba", got)(got, idx[:0], src[:0])  # no rows
    assert torch.equal(got, out)
    got = out.clone()
    _impl("numba", got)(got, idx[::2], src[::2])  # a non-contiguous source
    assert torch.equal(got, out.clone().index_add_(0, idx[::2], src[::2]))


def test_numba_refuses_bad_indices_and_what_it_cannot_run():
    out = torch.zeros(4, 3)
    add = _impl("numba", out)
    with pytest.raises(IndexError, match=r"idx\[1\] = 4 is outside \[0, 4\)"):
        add(out, torch.tensor([0, 4]), torch.ones(2, 3))
    with pytest.raises(IndexError, match=r"idx\[0\] = -1"):
        add(out, torch.tensor([-1]), torch.ones(1, 3))
    with pytest.raises(TypeError, match="int64"):
        add(out, torch.tensor([0], dtype=torch.int32), torch.ones(1, 3))
    with pytest.raises(ValueError, match="expected out"):
        add(out, torch.tensor([0]), torch.ones(1, 2))
    for t, why in ((torch.zeros(4, 3, dtype=torch.bfloat16), "float32 and float64"),
                   (torch.zeros(3, 4).t(), "contiguous")):
        with pytest.raises(BackendUnavailableError, match=why):
            _impl("numba", t)
        assert select_backend("index_add_rows", "auto", sparse_conv.RowsRequest(
            t.device, t.dtype, t.is_contiguous()), count=False).name == "torch"


@pytest.mark.parametrize("steps", [None, 3])
def test_sparse_convs_take_the_numba_path_and_match_torch(monkeypatch, steps):
    """Forward and backward of a submanifold and a strided conv: the row adds ran on numba, and the outputs and every
    gradient are bitwise those of the same convolutions with torch's index_add_."""
    g = torch.Generator().manual_seed(3)
    flat = torch.randperm(2 * 9 * 8 * 7, generator=g)[:150]
    coords = torch.stack([flat // 504, (flat // 56) % 9, (flat // 7) % 8, flat % 7], 1)
    feats = torch.randn((150, 4) if steps is None else (steps, 150, 4), generator=g)
    torch.manual_seed(0)
    subm, down = SubMConv3d(4, 6, 3), SparseConv3d(6, 5, 2, 2)

    def run():
        x = SparseSpikeTensor(feats.clone().requires_grad_(True), coords, (9, 8, 7), 2)
        y = down(subm(x))
        y.features.square().sum().backward()
        grads = [x.features.grad] + [p.grad.clone() for p in (*subm.parameters(), *down.parameters())]
        for p in (*subm.parameters(), *down.parameters()):
            p.grad = None
        return [y.features.detach()] + grads

    reset_backend_calls()
    fast = run()
    assert backend_calls("index_add_rows") == {"numba": 4}  # both forwards and both input gradients
    monkeypatch.setattr(sparse_conv, "_row_adder", lambda t: _impl("torch", t))
    for a, b in zip(fast, run()):
        assert torch.equal(a, b)


def test_numba_zero_width_rows_still_check_indices():
    add = _impl("numba", torch.zeros(3, 0))
    add(torch.zeros(3, 0), torch.tensor([0, 2]), torch.zeros(2, 0))
    with pytest.raises(IndexError, match=r"idx\[1\] = 3"):
        add(torch.zeros(3, 0), torch.tensor([0, 3]), torch.zeros(2, 0))
