"""The model registry: names, errors, and the shapes and parameter counts of every named constructor (printed as a
table with ``pytest -s``; the counts are reported, not tuned to any number)."""

import pytest
import torch

from spikelib.models import MaxFormer, MetaSpikeFormer, get_model, list_models, register_model

NAMED = ["meta_spikeformer_8_384", "meta_spikeformer_8_512", "meta_spikeformer_8_768", "meta_spikeformer_tiny_test",
         "maxformer_10_384", "maxformer_10_512", "maxformer_10_768", "maxformer_tiny_test"]


def test_names_are_listed():
    names = list_models()
    assert names == sorted(names)
    assert set(NAMED) <= set(names)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="meta_spikeformer_8_384"):
        get_model("spikformer_9000")


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register_model("maxformer_10_384")(lambda **kw: None)


def test_keywords_override_the_defaults():
    m = get_model("maxformer_tiny_test", num_classes=3, T=3, in_channels=2)
    assert isinstance(m, MaxFormer) and m.T == 3
    assert m(torch.rand(1, 2, 32, 32)).shape == (1, 3)
    # a sequence must have the model's T steps (issue 19: a [B, T] / [T, B] mix-up must not run silently)
    assert m(torch.rand(3, 1, 2, 32, 32)).shape == (1, 3)
    with pytest.raises(ValueError, match="5 time steps, but the model runs T=3"):
        m(torch.rand(5, 1, 2, 32, 32))


def test_parameter_table():
    """Every named constructor: parameters, and the output shape of a 32x32 image (T=1, one image)."""
    rows = []
    for name in NAMED:
        torch.manual_seed(0)
        model = get_model(name)
        n = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            out = model.eval()(torch.rand(1, model.in_channels, 32, 32))
        assert out.shape == (1, model.num_classes)
        assert torch.isfinite(out).all()
        rows.append((name, type(model).__name__, n, tuple(out.shape), model.T))
        del model
    print("\n\n  model                          class              parameters   output (1 image)  T")
    for name, cls, n, shape, T in rows:
        print(f"  {name:30s} {cls:18s} {n:>12,d}   {str(shape):16s}  {T}")
    params = {name: n for name, _, n, _, _ in rows}
    # larger widths, more parameters
    assert params["meta_spikeformer_8_384"] < params["meta_spikeformer_8_512"] < params["meta_spikeformer_8_768"]
    assert params["maxformer_10_384"] < params["maxformer_10_512"] < params["maxformer_10_768"]
    assert isinstance(get_model("meta_spikeformer_tiny_test"), MetaSpikeFormer)
