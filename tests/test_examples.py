"""Every script in examples/ runs at a tiny size and produces what it promises."""

import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(name, *args):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(["--tiny", *map(str, args)])


def test_every_example_is_tested():
    tested = {"custom_network_shd", "online_inference_cells", "record_and_plot", "nir_export",
              "energy_of_your_model", "loihi_deployment"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} == tested


def test_custom_network_on_shd_format_data(tmp_path):
    result = run("custom_network_shd", "--out", tmp_path)
    history = result["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(math.isfinite(h["train_loss"]) and 0.0 <= h["test_acc"] <= 1.0 for h in history)
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert (tmp_path / "data" / "shd_train.h5").is_file()


def test_online_inference_with_cells_equals_the_sequence_model():
    result = run("online_inference_cells")
    assert result["equal"] is True and result["spikes"] > 0


def test_record_and_plot(tmp_path):
    mpl_image = pytest.importorskip("matplotlib.image")
    result = run("record_and_plot", "--out", tmp_path)
    assert set(result["rates"]) == {"1", "5"} and all(r > 0 for r in result["rates"].values())
    assert result["hidden_shape"] == (12, 2, 4, 8, 8)
    for path in result["files"].values():
        img = mpl_image.imread(str(path))
        assert img.shape[0] > 100 and img.shape[1] > 100 and (img[:, :, :3].mean(axis=2) < 0.5).any(), path


def test_nir_export(tmp_path):
    pytest.importorskip("nir")
    result = run("nir_export", "--out", tmp_path / "net.nir")
    assert result["round_trip_equal"] is True and result["spikes"] > 0 and Path(result["path"]).is_file()
    assert ("n1", "out") in result["edges"] and ("n2", "out") in result["edges"]
    if "norse_equal" in result:
        assert result["norse_equal"] is True


def test_energy_of_your_model(tmp_path):
    result = run("energy_of_your_model", "--out", tmp_path)
    counts = result["counts"]
    assert counts.layer("stem.0").sops > 0 and counts.layer("head").sops > 0
    assert result["snn"].per_sample_pj > 0 and result["loihi"].per_sample_pj > 0 and result["ann"].per_sample_pj > 0
    assert (tmp_path / "energy.json").is_file() and (tmp_path / "energy.md").is_file()


def test_loihi_deployment(tmp_path):
    result = run("loihi_deployment", "--out", tmp_path / "net.h5")
    assert Path(result["path"]).is_file()
    assert result["float_acc"] > 0.9 and result["agreement"] >= 0.9
    assert all(n > 0 for n in result["spikes_per_layer"])


@pytest.mark.lava
@pytest.mark.slow
def test_loihi_deployment_in_lava(tmp_path):
    from spikelib.hardware.loihi.lava_runner import lava_available

    if not lava_available():
        pytest.skip("Lava is not installed (scripts/install_lava.sh)")
    result = run("loihi_deployment", "--out", tmp_path / "net.h5", "--lava")
    assert result["lava_bit_exact"] is True
