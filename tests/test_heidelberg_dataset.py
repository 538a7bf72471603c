"""The run registry's ``synthetic_heidelberg`` data set: generated once (speech -> cochlea), read by SHDDataset."""

import importlib.util

import pytest
import torch

from spikelib.training.datasets import build_datasets, list_datasets

pytestmark = pytest.mark.skipif(importlib.util.find_spec("espeakng_loader") is None,
                                reason="needs espeakng-loader (bash scripts/install_speech.sh)")


def test_synthetic_heidelberg_is_generated_once_and_split_by_speaker(tmp_path):
    assert "synthetic_heidelberg" in list_datasets()
    kw = dict(root=str(tmp_path), speakers=2, repeats=1, languages=["de"], workers=1, bin_ms=20.0)
    bundle = build_datasets("synthetic_heidelberg", 0, **kw)
    folder = bundle.info["generated"]
    assert len(bundle.train) == 10 and len(bundle.test) == 10            # one German speaker each, 10 words
    assert bundle.info["n_channels"] == 140 and bundle.info["n_classes"] == 20
    x, y = bundle.train[0]
    assert x.dtype == torch.float32 and x.shape[1] == 140 and x.sum() > 0 and 10 <= y <= 19
    assert set(bundle.train.speakers.tolist()).isdisjoint(bundle.test.speakers.tolist())
    again = build_datasets("synthetic_heidelberg", 0, **kw)              # cached: same folder, same items
    assert again.info["generated"] == folder and torch.equal(again.train[0][0], x)
