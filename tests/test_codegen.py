"""Kernel generation: every variant of the LIF template renders to valid Python, flags are checked, and generated
modules are cached on disk under SPIKELIB_CACHE_DIR."""

import ast
import itertools

import pytest
import torch

from spikelib.functional.lif import LIFConfig
from spikelib.kernels.cpu import codegen
from spikelib.kernels.cpu.lif_numba import _kernel_module
from spikelib.surrogate import SURROGATES, get_surrogate


def _render(config, dtype_ctor, save_h, save_v, gvs, pg, gs_scalar, scalar=False):
    import spikelib.kernels.cpu.lif_numba as ln

    captured = {}

    def fake_load(source, tag):
        captured["source"] = source
        return None

    orig = ln.load_generated
    ln.load_generated = fake_load
    try:
        _kernel_module.__wrapped__(config, dtype_ctor, save_h, save_v, gvs, pg, gs_scalar, scalar)  # bypass the cache
    finally:
        ln.load_generated = orig
    return captured["source"]


@pytest.mark.parametrize("surrogate", sorted(set(SURROGATES)))
def test_every_variant_renders_to_valid_python(surrogate):
    for reset, detach, decay, gs_scalar, save_h, save_v, gvs, pg, scalar, dtype in itertools.product(
        ["hard", "soft"], [False, True], [False, True], [False, True], [False, True], [False, True], [False, True],
        [False, True], [False, True], [torch.float32, torch.float64],
    ):
        cfg = LIFConfig(reset=reset, decay_input=decay, detach_reset=detach, surrogate=get_surrogate(surrogate))
        src = _render(cfg, dtype, save_h, save_v, gvs, pg, gs_scalar, scalar)
        ast.parse(src)
        assert "{" not in src.replace("{F}", "")
        assert ("np.float32" in src) == (dtype == torch.float32)


def test_missing_flag_or_value_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(codegen, "_TEMPLATE_DIR", tmp_path)
    (tmp_path / "t.tmpl").write_text("a = 1  #? FOO\nb = {BAR}\n")
    with pytest.raises(KeyError, match="flag 'FOO'"):
        codegen.render_template("t.tmpl", {}, {"BAR": "2"})
    with pytest.raises(KeyError, match="placeholders without a value"):
        codegen.render_template("t.tmpl", {"FOO": True}, {})
    assert codegen.render_template("t.tmpl", {"FOO": False}, {"BAR": "x\ny"}) == "b = x\ny\n"
    assert codegen.render_template("t.tmpl", {"FOO": True}, {"BAR": "2"}) == "a = 1\nb = 2\n"


def test_generated_modules_are_cached_in_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKELIB_CACHE_DIR", str(tmp_path))
    mod = codegen.load_generated("VALUE = 41 + 1\n", "unit")
    assert mod.VALUE == 42
    files = list((tmp_path / "kernels").glob("spikelib_gen_unit_*.py"))
    assert len(files) == 1 and files[0].read_text() == "VALUE = 41 + 1\n"
    assert codegen.load_generated("VALUE = 41 + 1\n", "unit") is mod
    assert not list((tmp_path / "kernels").glob("*.tmp")), "no half-written files may remain"
