"""Sparse conv == dense nn.Conv3d on the zero-filled grid, read at the active sites: forward and gradients."""

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F

from spikelib.sparse import (SparseConv3d, SparseSpikeTensor, SubMConv3d, build_kernel_map, get_kernel_map,
                             weight_from_dense, weight_to_dense)


pytestmark = pytest.mark.usefixtures("one_thread")


def random_sparse(shape, batch, n, channels, dtype=torch.float64, seed=0, t=None):
    g = torch.Generator().manual_seed(seed)
    X, Y, Z = shape
    flat = torch.randperm(batch * X * Y * Z, generator=g)[:n]
    z, y, x, b = flat % Z, (flat // Z) % Y, (flat // (Z * Y)) % X, flat // (Z * Y * X)
    coords = torch.stack([b, x, y, z], 1)
    size = (n, channels) if t is None else (t, n, channels)
    feats = torch.randn(*size, generator=g, dtype=dtype)
    return SparseSpikeTensor(feats, coords, shape, batch)


def at_sites(dense, coords):
    """Rows of ``dense [B, C, X, Y, Z]`` at ``coords [N, 4]`` -> ``[N, C]``."""
    return dense[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]]


def compare(conv, x, dense_kw):
    """Forward and gradients (input, weight, bias) of ``conv`` vs F.conv3d on ``x.dense()``."""
    feats = x.features.clone().requires_grad_(True)
    xs = x.replace_features(feats)
    out = conv(xs)
    r = torch.randn_like(out.features)
    (out.features * r).sum().backward()

    feats_d = x.features.clone().requires_grad_(True)
    w_d = weight_to_dense(conv.weight.detach(), conv.kernel_size).clone().requires_grad_(True)
    b_d = conv.bias.detach().clone().requires_grad_(True) if conv.bias is not None else None
    dense_out = F.conv3d(x.replace_features(feats_d).dense(), w_d, b_d, **dense_kw)
    ref = at_sites(dense_out, out.coords)
    (ref * r).sum().backward()
    torch.testing.assert_close(out.features, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(feats.grad, feats_d.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(weight_to_dense(conv.weight.grad, conv.kernel_size), w_d.grad, rtol=1e-10, atol=1e-10)
    if b_d is not None:
        torch.testing.assert_close(conv.bias.grad, b_d.grad, rtol=1e-10, atol=1e-10)
    return out, dense_out


@pytest.mark.parametrize("kernel,dilation,shape", [(1, 1, (5, 4, 3)), (3, 1, (7, 6, 5)), (5, 1, (9, 7, 5)),
                                                   (3, 2, (9, 8, 7)), ((3, 1, 5), 1, (7, 5, 9))])
def test_submanifold_equals_dense(kernel, dilation, shape):
    seed = kernel if isinstance(kernel, int) else 7
    x = random_sparse(shape, 2, int(0.3 * 2 * shape[0] * shape[1] * shape[2]), 3, seed=seed)
    conv = SubMConv3d(3, 4, kernel, dilation=dilation, bias=True).double()
    ks = conv.kernel_size
    pad = tuple(dilation * (k - 1) // 2 for k in ks)
    out, _ = compare(conv, x, dict(padding=pad, dilation=dilation))
    assert torch.equal(out.coords, x.coords)


@pytest.mark.parametrize("kernel,stride,padding,dilation,shape", [
    (2, 2, 0, 1, (7, 6, 5)), (3, 2, 1, 1, (9, 7, 5)), (3, 1, 0, 1, (6, 5, 7)), (5, 2, 2, 1, (11, 9, 7)),
    (1, 2, 0, 1, (7, 7, 7)), (3, 2, 0, 2, (11, 9, 9)), ((2, 3, 1), (2, 1, 3), (0, 1, 0), 1, (8, 7, 9))])
def test_strided_equals_dense(kernel, stride, padding, dilation, shape):
    x = random_sparse(shape, 3, int(0.15 * 3 * shape[0] * shape[1] * shape[2]), 2, seed=3)
    conv = SparseConv3d(2, 3, kernel, stride, padding, dilation, bias=True).double()
    out, dense_out = compare(conv, x, dict(stride=stride, padding=padding, dilation=dilation))
    # output sites: exactly the grid positions that some tap connects to an active input (dense conv of the
    # occupancy mask with an all-ones kernel is > 0 there)
    occ = (x.dense().abs().sum(1, keepdim=True) > 0).double()
    ks = conv.kernel_size
    reach = F.conv3d(occ, torch.ones(1, 1, *ks, dtype=torch.float64), stride=stride, padding=padding,
                     dilation=dilation)[:, 0] > 0
    assert out.spatial_shape == tuple(dense_out.shape[2:])
    assert out.num_sites == int(reach.sum())
    assert bool(reach[out.coords[:, 0], out.coords[:, 1], out.coords[:, 2], out.coords[:, 3]].all())


def test_multistep_features_same_weights_every_step():
    x = random_sparse((6, 5, 7), 2, 40, 3, t=4)
    conv = SubMConv3d(3, 5, 3, bias=True).double()
    out = conv(x)
    assert out.features.shape == (4, 40, 5)
    for t in range(4):
        single = conv(x.replace_features(x.features[t]))
        torch.testing.assert_close(out.features[t], single.features)


@pytest.mark.parametrize("steps", [None, 3])
def test_gradcheck_float64(steps):
    x = random_sparse((5, 4, 6), 2, 20, 2, seed=5, t=steps)
    for conv in (SubMConv3d(2, 3, 3, bias=True).double(), SparseConv3d(2, 3, 3, 2, 1, bias=True).double()):
        kmap = conv.kernel_map(x)

        def f(feats, w, b):
            from spikelib.sparse.conv import sparse_conv3d
            return sparse_conv3d(x.replace_features(feats), w, b, kmap).features

        inputs = (x.features.clone().requires_grad_(True), conv.weight.detach().clone().requires_grad_(True),
                  conv.bias.detach().clone().requires_grad_(True))
        assert torch.autograd.gradcheck(f, inputs)


def test_gradgradcheck_float64_takes_the_recorded_add_in_a_create_graph_backward():
    """Second derivatives (``create_graph=True``): the backward's row additions are then recorded by autograd, so the
    registry gives them torch's ``index_add_`` (the numba kernel writes through numpy, which autograd cannot see)."""
    from spikelib.kernels import backend_calls, reset_backend_calls
    from spikelib.sparse.conv import sparse_conv3d

    x = random_sparse((5, 4, 6), 2, 20, 2, seed=5)
    for conv in (SubMConv3d(2, 3, 3, bias=True).double(), SparseConv3d(2, 3, 3, 2, 1, bias=True).double()):
        kmap = conv.kernel_map(x)

        def f(feats, w, b):
            return sparse_conv3d(x.replace_features(feats), w, b, kmap).features

        inputs = (x.features.clone().requires_grad_(True), conv.weight.detach().clone().requires_grad_(True),
                  conv.bias.detach().clone().requires_grad_(True))
        reset_backend_calls()
        assert torch.autograd.gradgradcheck(f, inputs)
        calls = backend_calls("index_add_rows")
        assert calls.get("torch", 0) > 0 and calls.get("numba", 0) > 0  # recorded adds / forward and first order


def test_float32_close_to_dense():
    x = random_sparse((9, 9, 9), 2, 150, 8, dtype=torch.float32)
    conv = SubMConv3d(8, 16, 3)
    out = conv(x)
    ref = at_sites(F.conv3d(x.dense(), weight_to_dense(conv.weight, 3), padding=1), x.coords)
    torch.testing.assert_close(out.features, ref, rtol=1e-5, atol=1e-5)


def test_autocast_and_dtype_mismatch():
    """Under autocast the GEMMs run in the autocast dtype and gradients come back in float32; outside autocast a
    dtype mismatch is a clear error."""
    x = random_sparse((7, 7, 7), 1, 60, 4, dtype=torch.float32)
    conv = SubMConv3d(4, 5, 3, bias=True)
    f = x.features.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x.replace_features(f))
    assert y.features.dtype == torch.float32          # bfloat16 GEMMs + float32 bias
    y.features.sum().backward()
    assert f.grad.dtype == torch.float32 and conv.weight.grad.dtype == torch.float32
    ref = conv(x).features
    torch.testing.assert_close(y.features, ref, rtol=5e-2, atol=5e-2)
    with pytest.raises(TypeError, match="float64"):
        conv(x.replace_features(x.features.double()))


def test_weight_layout_roundtrip():
    w = torch.randn(4, 3, 2, 3, 5)
    assert torch.equal(weight_to_dense(weight_from_dense(w), (2, 3, 5)), w)


def test_kernel_map_cached_and_shared():
    x = random_sparse((6, 6, 6), 1, 30, 2)
    conv = SubMConv3d(2, 2, 3)
    m1 = conv.kernel_map(x)
    y = x.replace_features(x.features * 2)
    assert conv.kernel_map(y) is m1                       # shared cache for the same coordinates
    assert get_kernel_map(x, 3, subm=True) is m1
    assert get_kernel_map(x, 3, dilation=2, subm=True) is not m1


@pytest.mark.parametrize("lookup", ["sort", "table"])
def test_kernel_map_pairs_brute_force(lookup):
    """Every (i, o, k) pair of the map, and no other, satisfies the submanifold/strided rule (checked in Python)."""
    x = random_sparse((5, 6, 4), 2, 25, 1, seed=11)
    c = x.coords.tolist()
    where = {tuple(v): i for i, v in enumerate(c)}
    offsets = list(itertools.product(range(3), repeat=3))
    kmap = build_kernel_map(x, 3, subm=True, lookup=lookup)
    got = {(int(i), int(o), k) for k in range(27) for i, o in zip(*kmap.pairs(k))}
    want = set()
    for o, (b, px, py, pz) in enumerate(c):
        for k, (a, bb, cc) in enumerate(offsets):
            nb = (b, px + a - 1, py + bb - 1, pz + cc - 1)
            if nb in where:
                want.add((where[nb], o, k))
    assert got == want
    assert int(kmap.pair_counts().sum()) == kmap.num_pairs == len(want)
    ci, co = kmap.pairs(kmap.centre_tap)                  # the conv skips gather/scatter for this tap
    assert torch.equal(ci, torch.arange(x.num_sites)) and torch.equal(co, torch.arange(x.num_sites))

    kmap = build_kernel_map(x, 2, stride=2)
    outc = kmap.out_coords.tolist()
    got = {(int(i), tuple(outc[int(o)]), k) for k in range(8) for i, o in zip(*kmap.pairs(k))}
    want = set()
    for i, (b, px, py, pz) in enumerate(c):
        for k, off in enumerate(itertools.product(range(2), repeat=3)):
            num = [px - off[0], py - off[1], pz - off[2]]
            if all(v % 2 == 0 and v >= 0 for v in num):
                o = tuple(v // 2 for v in num)
                if all(ov < s for ov, s in zip(o, kmap.out_spatial_shape)):
                    want.add((i, (b,) + o, k))
    assert got == want


def _ordered_pairs_brute_force(x, kernel, stride, padding, dilation, subm):
    """Per tap, the pairs the rule gives in the map's documented order: a submanifold tap's pairs by the sorted key of
    their output site, a strided tap's in input order with outputs numbered by sorted key (checked in Python)."""
    c = [tuple(v) for v in x.coords.tolist()]
    key = lambda v, shape: ((v[0] * shape[0] + v[1]) * shape[1] + v[2]) * shape[2] + v[3]  # noqa: E731
    taps = list(itertools.product(*(range(k) for k in kernel)))
    where = {v: i for i, v in enumerate(c)}
    if subm:
        by_key = sorted(range(len(c)), key=lambda i: key(c[i], x.spatial_shape))
        centre = tuple((k - 1) // 2 for k in kernel)  # the centre tap: (i, i) in site order
        return [[(o, o) for o in range(len(c))] if t == centre else [(where[nb], o) for o in by_key
                 for nb in [(c[o][0],) + tuple(c[o][a + 1] + (t[a] - (kernel[a] - 1) // 2) * dilation[a]
                                               for a in range(3))] if nb in where] for t in taps], None
    out_shape = [(S + 2 * p - d * (k - 1) - 1) // s + 1
                 for S, k, s, p, d in zip(x.spatial_shape, kernel, stride, padding, dilation)]
    found = []
    for t in taps:
        pairs = []
        for i, v in enumerate(c):
            num = [v[a + 1] + padding[a] - t[a] * dilation[a] for a in range(3)]
            if all(n % stride[a] == 0 and 0 <= n // stride[a] < out_shape[a] for a, n in enumerate(num)):
                pairs.append((i, (v[0],) + tuple(n // stride[a] for a, n in enumerate(num))))
        found.append(pairs)
    outs = sorted({o for pairs in found for _, o in pairs}, key=lambda v: key(v, out_shape))
    number = {o: j for j, o in enumerate(outs)}
    return [[(i, number[o]) for i, o in pairs] for pairs in found], outs


@pytest.mark.parametrize("lookup", ["sort", "table"])
@pytest.mark.parametrize("kernel, dilation", [((3, 3, 3), (1, 1, 1)), ((5, 3, 1), (2, 1, 1)), ((3, 5, 3), (1, 1, 2))])
def test_submanifold_map_order_and_mirrored_taps(lookup, kernel, dilation):
    """Half the taps are searched and the others mirrored from them: every tap has exactly the pairs, in the order,
    of a direct search (outputs in sorted-key order), so the convolution's summation order is unchanged."""
    x = random_sparse((7, 6, 9), 3, 160, 1, seed=21)
    kmap = build_kernel_map(x, kernel, dilation=dilation, subm=True, lookup=lookup)
    want, _ = _ordered_pairs_brute_force(x, kernel, (1, 1, 1), (0, 0, 0), dilation, True)
    for k, pairs in enumerate(want):
        i, o = kmap.pairs(k)
        assert list(zip(i.tolist(), o.tolist())) == pairs, k


@pytest.mark.parametrize("shape", [(8, 6, 4), (7, 5, 9), (1, 3, 2)])
@pytest.mark.parametrize("kernel", [(2, 2, 2), (3, 1, 2), (1, 1, 1)])
def test_tiling_strided_map_equals_the_rule(shape, kernel):
    """Kernel = stride (E-3DSNN's downsampling) takes a direct path: the same pairs, order, output numbering and
    output coordinates as the general rule, including sites past the last whole tile of an odd-sized axis."""
    x = random_sparse(shape, 2, min(40, shape[0] * shape[1] * shape[2]), 1, seed=5)
    if any(S < k for S, k in zip(shape, kernel)):
        return
    kmap = build_kernel_map(x, kernel, stride=kernel)
    want, outs = _ordered_pairs_brute_force(x, kernel, kernel, (0, 0, 0), (1, 1, 1), False)
    for k, pairs in enumerate(want):
        i, o = kmap.pairs(k)
        assert list(zip(i.tolist(), o.tolist())) == pairs, k
    assert [tuple(v) for v in kmap.out_coords.tolist()] == outs
    assert kmap.num_out == len(outs)


def test_lookup_modes_give_the_same_map():
    x = random_sparse((13, 11, 9), 3, 600, 1, seed=4)
    for kernel, dilation in ((3, 1), (5, 2), ((1, 3, 5), 1)):
        a = build_kernel_map(x, kernel, dilation=dilation, subm=True, lookup="sort")
        b = build_kernel_map(x, kernel, dilation=dilation, subm=True, lookup="table")
        assert torch.equal(a.offset_ptr, b.offset_ptr)
        assert torch.equal(a.in_idx, b.in_idx) and torch.equal(a.out_idx, b.out_idx)
    with pytest.raises(ValueError, match="lookup"):
        build_kernel_map(x, 3, subm=True, lookup="hash")


def test_empty_input_gives_empty_output():
    x = SparseSpikeTensor(torch.zeros(0, 2), torch.zeros(0, 4, dtype=torch.long), (4, 4, 4), batch_size=1)
    out = SubMConv3d(2, 3, 3, bias=True)(x)
    assert out.features.shape == (0, 3)
    out = SparseConv3d(2, 3, 2, 2)(x)
    assert out.features.shape == (0, 3) and out.spatial_shape == (2, 2, 2)


def test_conv_bad_arguments():
    x = random_sparse((5, 5, 5), 1, 10, 2, dtype=torch.float32)
    with pytest.raises(ValueError, match="C_in = 3"):
        SubMConv3d(3, 4, 3)(x)
    with pytest.raises(ValueError, match="odd kernel_size"):
        SubMConv3d(2, 4, 2)
    with pytest.raises(ValueError, match="kernel_size must be >= 1"):
        SparseConv3d(2, 4, 0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        SparseConv3d(2, 4, 3, 1, -1)
    with pytest.raises(ValueError, match="in_channels"):
        SubMConv3d(0, 4, 3)
    with pytest.raises(TypeError, match="SparseSpikeTensor"):
        SubMConv3d(2, 4, 3)(torch.zeros(10, 2))
    with pytest.raises(ValueError, match="too small"):
        SparseConv3d(2, 4, 7, 1, 0)(x)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    """The same torch ops on the GPU: forward and gradients equal the CPU result (float64)."""
    x = random_sparse((9, 8, 7), 2, 120, 4, seed=9)
    for conv in (SubMConv3d(4, 6, 3, bias=True).double(), SparseConv3d(4, 6, 2, 2, bias=True).double()):
        conv_gpu = copy.deepcopy(conv).cuda()
        outs = []
        for c, dev in ((conv, "cpu"), (conv_gpu, "cuda")):
            f = x.features.to(dev).clone().requires_grad_(True)
            xs = SparseSpikeTensor(f, x.coords.to(dev), x.spatial_shape, x.batch_size)
            y = c(xs)
            r = torch.arange(y.features.numel(), device=dev).reshape(y.features.shape).double()
            (y.features * r).sum().backward()
            outs.append((y.coords.cpu(), y.features.detach().cpu(), f.grad.cpu(), c.weight.grad.cpu()))
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b)
