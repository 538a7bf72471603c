"""E-3DSNN end to end in spikelib's Trainer: the recipe file, CI-sized, on the synthetic_shapes data set."""

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


def test_trains_through_the_spikelib_trainer(tmp_path):
    """The recipe file with CI-sized overrides runs end to end in spikelib's Trainer: the synthetic_shapes data set
    (10 classes, chance 0.1; xyz only: normals off in data and model), points-first batches."""
    from pathlib import Path

    from spikelib.training.config import apply_overrides, parse_config, read_yaml
    from spikelib.training.trainer import Trainer

    raw = read_yaml(Path(__file__).resolve().parents[1] / "configs" / "modelnet_e3dsnn.yaml")
    overrides = [
        "data.dataset=synthetic_shapes", f"data.root={tmp_path / 'data'}", "data.n_train=160", "data.n_test=60",
        "data.n_points=256", "data.use_normals=false", "optim.nesterov=false", "data.batch_size=8", "data.eval_batch_size=32", "data.val_fraction=0.2",
        "model.name=e3dsnn_tiny", "model.in_channels=3", "model.use_normals=false", "model.num_classes=10",
        "model.embed_channels=8", "model.enc_channels=[8, 16]", "model.enc_depth=[1, 1]", "model.grid_size=0.1",
        "model.bn_momentum=0.1", "optim.name=adam", "optim.lr=0.01", "optim.weight_decay=0", "schedule.name=cosine",
        "train.epochs=6", "train.label_smoothing=0.0", "train.device=cpu", "train.progress=false"]
    cfg = parse_config(apply_overrides(raw, overrides))
    result = Trainer(cfg, tmp_path / "run").fit()
    print(f"trainer: tiny E-3DSNN test accuracy {result['test']['acc']:.3f} on 10 synthetic shape classes")
    assert (tmp_path / "run" / "best.pt").is_file()
    assert result["test"]["count"] == 60 and result["test"]["acc"] >= 0.2
