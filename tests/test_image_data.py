"""Image data for IIR-SNN: scikit-learn's digits file, the CIFAR binary reader (on small files in the official
layout), the synthetic blob images, the transforms."""

import gzip
import pickle
import tarfile

import numpy as np
import pytest
import torch

from spikelib.data import cifar
from spikelib.data.cifar import CIFAR10Dataset, CIFAR100Dataset, read_cifar_records, write_cifar_binary
from spikelib.data.digits import DigitsDataset, digits_file, read_digits
from spikelib.data.image_transforms import PadCropFlip
from spikelib.data.synthetic_images import SyntheticImageDataset


@pytest.fixture
def no_unpickling(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("something tried to unpickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)


# ---------------------------------------------------------------------------------------------------- digits
def test_digits_file_and_splits(no_unpickling):
    images, labels = read_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and images.max() == 16
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # the UCI counts
    train, test = DigitsDataset("train"), DigitsDataset("test")
    assert len(train) + len(test) == 1797 and len(test) == 450
    assert set(train.y.tolist()) == set(range(10))
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and isinstance(y, int)
    assert abs(float(train.x.mean())) < 1e-5 and abs(float(train.x.std()) - 1) < 1e-3  # training statistics
    assert test.mean == train.mean and test.std == train.std
    # stratified: every class has round(0.25 n_c) test samples
    assert torch.bincount(test.y).tolist() == [round(0.25 * n) for n in np.bincount(labels)]
    raw = DigitsDataset("test", normalize=False)
    assert float(raw.x.min()) == 0.0 and float(raw.x.max()) == 1.0
    other = DigitsDataset("test", split_seed=1)
    assert not torch.equal(other.x, test.x)


def test_digits_bad_input(tmp_path):
    with pytest.raises(ValueError, match="split must be"):
        DigitsDataset("val")
    with pytest.raises(ValueError, match="test_fraction"):
        DigitsDataset(test_fraction=1.0)
    bad = tmp_path / "digits.csv.gz"
    with gzip.open(bad, "wt") as f:
        f.write("1,2,3\n")
    with pytest.raises(ValueError, match="expected 1797 rows"):
        read_digits(bad)
    text = gzip.open(digits_file(), "rt").read().replace("0,", "17,", 1)
    with gzip.open(bad, "wt") as f:
        f.write(text)
    with pytest.raises(ValueError, match="pixel values must be in 0..16"):
        read_digits(bad)


# ----------------------------------------------------------------------------------------------------- CIFAR
def _fixture(tmp_path, monkeypatch, classes, n=7, archive=False):
    rng = np.random.default_rng(classes)
    folder, name, files, label_bytes = cifar._LAYOUT[classes]
    monkeypatch.setitem(cifar.RECORDS, (classes, "train"), n)
    monkeypatch.setitem(cifar.RECORDS, (classes, "test"), n)
    root = tmp_path / folder
    root.mkdir()
    written = {}
    for split, names in files.items():
        for f in names:
            images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
            labels = rng.integers(0, 10, size=n) if classes == 10 else np.stack(
                [rng.integers(0, 20, size=n), rng.integers(0, 100, size=n)], 1)
            write_cifar_binary(root / f, images, labels)
            written.setdefault(split, []).append((images, labels))
    if archive:
        with tarfile.open(tmp_path / name, "w:gz") as tar:
            tar.add(root, arcname=folder)
        for f in root.iterdir():
            f.unlink()
        root.rmdir()
    return written


@pytest.mark.parametrize("archive", [False, True])
def test_cifar10_binary_layout(tmp_path, monkeypatch, no_unpickling, archive):
    written = _fixture(tmp_path, monkeypatch, 10, archive=archive)
    train = CIFAR10Dataset(tmp_path, "train", normalize=False)
    assert len(train) == 35  # five files of 7 records
    images = np.concatenate([w[0] for w in written["train"]])
    labels = np.concatenate([w[1] for w in written["train"]])
    x, y = train[8]
    # record bytes: 1024 red, 1024 green, 1024 blue, rows in order
    assert torch.equal(x, torch.from_numpy(images[8].astype(np.float32) / 255.0)) and y == labels[8]
    norm = CIFAR10Dataset(tmp_path, "test")[0][0]
    raw = CIFAR10Dataset(tmp_path, "test", normalize=False)[0][0]
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).reshape(3, 1, 1)
    std = torch.tensor([0.2023, 0.1994, 0.2010]).reshape(3, 1, 1)
    torch.testing.assert_close(norm, (raw - mean) / std)


def test_cifar100_fine_and_coarse(tmp_path, monkeypatch, no_unpickling):
    written = _fixture(tmp_path, monkeypatch, 100)
    fine = CIFAR100Dataset(tmp_path, "test")
    coarse = CIFAR100Dataset(tmp_path, "test", label="coarse")
    labels = written["test"][0][1]
    assert [fine[i][1] for i in range(7)] == labels[:, 1].tolist()
    assert [coarse[i][1] for i in range(7)] == labels[:, 0].tolist()
    assert fine.n_classes == 100 and coarse.n_classes == 20


def test_cifar_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="binary version"):
        CIFAR10Dataset(tmp_path)
    _fixture(tmp_path, monkeypatch, 10)
    monkeypatch.setitem(cifar.RECORDS, (10, "test"), 10000)
    with pytest.raises(ValueError, match="expected 10000 records, found 7"):
        CIFAR10Dataset(tmp_path, "test")
    with pytest.raises(ValueError, match="not a whole number of 3073-byte"):
        read_cifar_records(b"\0" * 3074, 1, "x.bin")
    with pytest.raises(ValueError, match="label byte 0 has value 12"):
        read_cifar_records(bytes([12]) + b"\0" * 3072, 1, "x.bin")
    with pytest.raises(ValueError, match="coarse"):
        cifar._CIFAR.__init__(CIFAR10Dataset.__new__(CIFAR10Dataset), tmp_path, "test", False, True, "coarse")
    (tmp_path / "cifar-100-binary.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="not a readable .tar.gz"):
        CIFAR100Dataset(tmp_path)


def test_pad_crop_flip_is_seeded_and_shape_preserving():
    x = torch.arange(3 * 6 * 6, dtype=torch.float32).reshape(3, 6, 6)
    a = PadCropFlip(2, 0.5, torch.Generator().manual_seed(0))
    b = PadCropFlip(2, 0.5, torch.Generator().manual_seed(0))
    outs = [a(x) for _ in range(20)]
    assert all(torch.equal(o, b(x)) for o in outs)
    assert all(o.shape == x.shape for o in outs)
    assert any(torch.equal(o, x.flip(-1)) or not torch.equal(o, x) for o in outs)
    assert torch.equal(PadCropFlip(0, 0.0)(x), x)
    with pytest.raises(ValueError, match="padding"):
        PadCropFlip(-1)


# ------------------------------------------------------------------------------------------------- synthetic
def test_synthetic_images_are_seeded_balanced_and_learnable():
    a = SyntheticImageDataset(300, seed=1)
    b = SyntheticImageDataset(300, seed=1)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert a[0][0].shape == (3, 32, 32)
    assert torch.bincount(a.y).tolist() == [30] * 10
    train, test = SyntheticImageDataset(1000, seed=0), SyntheticImageDataset(300, seed=5)
    means = torch.stack([train.x[train.y == c].flatten(1).mean(0) for c in range(10)])
    acc = float((torch.cdist(test.x.flatten(1), means).argmin(1) == test.y).float().mean())
    assert 0.5 < acc  # nearest class mean: well above chance (0.1)
    with pytest.raises(ValueError, match="n_classes"):
        SyntheticImageDataset(10, n_classes=1)
