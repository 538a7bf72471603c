"""The CPU kernel workspace: blocks are reused only when no tensor uses them any more, small tensors bypass it, the
pool stays within its bound, and it can be switched off and emptied."""

import gc
import threading

import pytest
import torch

from spikelib.kernels.cpu import workspace

BIG = (workspace.MIN_BYTES // 4) * 2  # float32 elements of a pooled tensor


@pytest.fixture(autouse=True)
def fresh_pool(monkeypatch):
    monkeypatch.delenv("SPIKELIB_WORKSPACE_MB", raising=False)
    workspace.clear()
    yield
    workspace.clear()


def test_block_reused_after_the_last_tensor_is_gone():
    t = workspace.empty((BIG,))
    ptr = t.data_ptr()
    assert t.dtype == torch.float32 and t.shape == (BIG,) and t.is_contiguous() and ptr % 64 == 0
    hits = workspace.stats()["hits"]
    del t
    u = workspace.empty((BIG,))
    assert u.data_ptr() == ptr and workspace.stats()["hits"] == hits + 1


def test_block_kept_while_a_view_or_grad_uses_it():
    t = workspace.empty((BIG,))
    ptr = t.data_ptr()
    view = t[10:].view(-1)
    del t
    gc.collect()
    u = workspace.empty((BIG,))
    assert u.data_ptr() != ptr  # the view still holds the first block
    view.fill_(1.0)
    u.fill_(2.0)
    assert bool((view == 1.0).all())
    p = torch.zeros(BIG, requires_grad=True)
    p.grad = u
    del u
    w = workspace.empty((BIG,))
    assert w.data_ptr() != p.grad.data_ptr()


def test_shape_dtype_and_fit():
    a = workspace.empty((3, BIG // 3), torch.float64)
    assert a.dtype == torch.float64 and a.shape == (3, BIG // 3)
    ptr = a.data_ptr()
    del a
    smaller = workspace.empty((BIG - 64,), torch.float64)  # fits the freed block within FIT_SLACK
    assert smaller.data_ptr() == ptr
    del smaller
    much_smaller = workspace.empty((BIG // 2,), torch.float64)  # too much slack: a new block
    assert much_smaller.data_ptr() != ptr


def test_small_tensors_bypass_the_pool():
    before = workspace.stats()
    t = workspace.empty((10, 10))
    after = workspace.stats()
    assert t.shape == (10, 10) and after["bypassed"] == before["bypassed"] + 1
    assert after["new_blocks"] == before["new_blocks"]


def test_bound_and_clear(monkeypatch):
    monkeypatch.setenv("SPIKELIB_WORKSPACE_MB", "1")
    tensors = [workspace.empty((BIG,)) for _ in range(6)]  # 6 x 512 KiB
    del tensors
    assert workspace.free_bytes() <= 1 << 20
    workspace.clear()
    assert workspace.free_bytes() == 0


def test_disabled_by_zero(monkeypatch):
    monkeypatch.setenv("SPIKELIB_WORKSPACE_MB", "0")
    before = workspace.stats()["bypassed"]
    t = workspace.empty((BIG,))
    assert workspace.stats()["bypassed"] == before + 1 and t.numel() == BIG


@pytest.mark.parametrize("value", ["-1", "lots"])
def test_bad_setting_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("SPIKELIB_WORKSPACE_MB", value)
    with pytest.raises(ValueError, match="SPIKELIB_WORKSPACE_MB"):
        workspace.empty((BIG,))


def test_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        workspace.empty((-1, 4))


def test_threads_never_share_live_blocks():
    errors = []

    def work(seed):
        for i in range(50):
            t = workspace.empty((BIG,))
            t.fill_(float(seed * 1000 + i))
            if not bool((t == float(seed * 1000 + i)).all()):
                errors.append(seed)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


def test_autograd_output_of_workspace_memory():
    x = torch.randn(BIG // 4, 4, requires_grad=True)
    w = workspace.empty((BIG // 4, 4))
    w.copy_(x.detach())
    y = (x * w).sum()
    y.backward()
    torch.testing.assert_close(x.grad, w)


def test_lif_numba_steady_state_reuses_its_memory():
    """The numba LIF's [T, M] tensors (spikes, H, input gradient) come from the workspace: from the second call on no
    new block is made; results equal the torch reference."""
    pytest.importorskip("numba")
    import spikelib

    x = (torch.randn(20, 8, 512, generator=torch.Generator().manual_seed(0)) + 0.5).requires_grad_(True)
    fast = spikelib.LIF(tau=2.0, detach_reset=True, backend="numba")
    ref = spikelib.LIF(tau=2.0, detach_reset=True, backend="torch")

    def step(m):
        x.grad = None
        s = m(x)
        s.sum().backward()
        return s.detach().clone(), x.grad.clone()

    step(fast)
    before = workspace.stats()
    for _ in range(3):
        s, g = step(fast)
    after = workspace.stats()
    assert after["new_blocks"] == before["new_blocks"] and after["hits"] >= before["hits"] + 9
    s_ref, g_ref = step(ref)
    assert torch.equal(s, s_ref) and torch.equal(g, g_ref)


def test_scratch_serves_every_size_from_one_block_per_thread():
    """The arena grows to the largest request (whole MiB), then serves smaller and equal requests from the same
    memory; free_bytes counts it while idle and clear gives it back."""
    with workspace.scratch(3 << 20) as a:
        assert a.dtype == torch.uint8 and a.numel() == 3 << 20 and a.data_ptr() % 64 == 0
        ptr = a.data_ptr()
        a.fill_(7)
    assert workspace.free_bytes() == 3 << 20
    new_blocks = workspace.stats()["new_blocks"]
    for nbytes in (1000, (3 << 20) - 5, 3 << 20):
        with workspace.scratch(nbytes) as b:
            assert b.data_ptr() == ptr and b.numel() == nbytes
    assert workspace.stats()["new_blocks"] == new_blocks
    with workspace.scratch((3 << 20) + 1) as c:  # larger: the arena grows to 4 MiB
        assert c.numel() == (3 << 20) + 1
    assert workspace.free_bytes() == 4 << 20 and workspace.stats()["new_blocks"] == new_blocks + 1
    workspace.clear()
    assert workspace.free_bytes() == 0


def test_scratch_nested_and_over_the_bound_get_their_own_memory(monkeypatch):
    with workspace.scratch(1 << 20) as outer:
        outer.fill_(1)
        with workspace.scratch(1 << 20) as inner:  # the arena is in use: separate memory
            inner.fill_(2)
            assert inner.data_ptr() != outer.data_ptr()
            assert workspace.free_bytes() == 0  # an arena in use is not free
        assert bool((outer == 1).all())
    monkeypatch.setenv("SPIKELIB_WORKSPACE_MB", "1")
    with workspace.scratch(2 << 20) as big:  # above the bound: not kept
        assert big.numel() == 2 << 20
    assert workspace.free_bytes() <= 1 << 20
    monkeypatch.setenv("SPIKELIB_WORKSPACE_MB", "0")
    workspace.clear()
    with workspace.scratch(1000) as tiny:
        assert tiny.numel() == 1000
    assert workspace.free_bytes() == 0


def test_scratch_arenas_are_per_thread_and_errors():
    ptrs = {}

    def work(name):
        with workspace.scratch(1 << 20) as block:
            ptrs[name] = block.data_ptr()
            block.fill_(len(name))
            barrier.wait()  # both threads hold their block at once
            assert bool((block == len(name)).all())

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "bb")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(set(ptrs.values())) == 2
    with pytest.raises(ValueError, match="nbytes"):
        with workspace.scratch(-1):
            pass
