"""ModelNet40 point clouds from the two common public formats, with normalisation and scale/shift augmentation.

``modelnet40_ply_hdf5_2048`` (the PointNet/DGCNN files): ``ply_data_train0.h5 .. ply_data_train4.h5``,
``ply_data_test0.h5, ply_data_test1.h5`` with ``data`` float32 ``[N, 2048, 3]``, ``label`` uint8 ``[N, 1]``, and
``normal`` float32 ``[N, 2048, 3]`` where present, plus ``shape_names.txt`` (one class name per line). Items take the
first ``n_points`` points of each cloud (as DGCNN's loader does).

Original meshes (``ModelNet40/<class>/{train,test}/*.off``): classes are the sorted class folders. Each mesh is
sampled uniformly over its surface: a triangle ``f`` with area ``A_f`` is picked with probability ``A_f / sum A``, then
a point ``p = (1 - sqrt(r1)) a + sqrt(r1) (1 - r2) b + sqrt(r1) r2 c`` with ``r1, r2 ~ U(0, 1)`` (uniform on the
triangle ``abc``); its normal is the face normal ``(b - a) x (c - a) / |...|``. Polygons are split into triangle fans.
Sampling is seeded per item (``default_rng([seed, index])``), so a data set is the same every time it is built.

Normalisation to the unit sphere: ``p <- (p - mean(p)) / max_i |p_i - mean(p)|``. Augmentation
(:class:`RandomScaleShift`, DGCNN's ``translate_pointcloud``): ``p <- p * s + t`` with per-axis
``s ~ U(2/3, 3/2)`` and ``t ~ U(-0.2, 0.2)``; normals transform as ``n <- (n / s) / |n / s|`` (DGCNN has no
normals); :class:`ShufflePoints` permutes the point order (DGCNN shuffles training clouds). Reference read for the
HDF5 reading, the first-``n_points`` rule and the augmentation: WangYueFt/dgcnn, ``pytorch/data.py``.

Items are ``(points float32 [P, 3] (or [P, 6] with normals), label int)``.
"""

from __future__ import annotations

import numbers
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from spikelib.data._hdf5 import LazyH5, atomic_path, check_stored, h5_errors, open_h5, require_dataset

__all__ = ["ModelNet40Dataset", "RandomScaleShift", "ShufflePoints", "read_off", "write_off", "sample_surface",
           "normalize_unit_sphere", "MODELNET40_URL"]

MODELNET40_URL = ("https://modelnet.cs.princeton.edu/ (ModelNet40.zip, .off meshes) or the PointNet HDF5 archive "
                  "modelnet40_ply_hdf5_2048.zip")
_H5_LAYOUT = "data float32 [N, P, 3], label int [N, 1] or [N], optional normal float32 [N, P, 3]"


# --------------------------------------------------------------------------------------------------- meshes
def read_off(path: Union[str, Path]) -> Tuple[np.ndarray, np.ndarray]:
    """Read an OFF mesh: ``(vertices float64 [V, 3], triangles int64 [F, 3])`` (polygons split into fans).

    Accepts ModelNet's quirk of counts on the header line (``OFF490 518 0``) and ``#`` comments.
    """
    path = Path(path)
    text = path.read_text(errors="replace")
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].upper().startswith("OFF"):
        raise ValueError(f"{path}: not an OFF file (first line must start with 'OFF')")
    head = lines[0][3:].strip()
    body = lines[1:] if not head else [head] + lines[1:]
    try:
        counts = [int(v) for v in body[0].split()[:3]]
        n_vert, n_face = counts[0], counts[1]
        if n_vert < 0 or n_face < 0:
            raise ValueError
        verts = np.array([ln.split()[:3] for ln in body[1:1 + n_vert]], dtype=np.float64)
        face_lines = body[1 + n_vert:1 + n_vert + n_face]
    except (ValueError, IndexError):
        raise ValueError(f"{path}: malformed OFF header or vertex list") from None
    if verts.shape != (n_vert, 3) or len(face_lines) != n_face:
        raise ValueError(f"{path}: expected {n_vert} vertices and {n_face} faces, found {verts.shape[0]} and "
                         f"{len(face_lines)} (truncated file?)")
    if not np.all(np.isfinite(verts)):
        raise ValueError(f"{path}: vertex coordinates must be finite numbers")
    faces = _uniform_faces(face_lines)
    if faces is None:
        faces = _polygon_faces(face_lines, path, n_vert)
    if faces.size and (faces.min() < 0 or faces.max() >= n_vert):
        raise ValueError(f"{path}: face vertex index out of range 0..{n_vert - 1}")
    return verts, faces


def _uniform_faces(face_lines: List[str]) -> Optional[np.ndarray]:
    """Fast path: every face is a k-gon with exactly k indices (ModelNet's meshes are triangles)."""
    if not face_lines:
        return np.zeros((0, 3), dtype=np.int64)
    try:
        arr = np.array([ln.split() for ln in face_lines], dtype=np.int64)
    except (ValueError, OverflowError):  # ragged rows, non-integers, beyond int64: the slow path reports the face
        return None
    if arr.ndim != 2 or arr.shape[1] < 4 or not np.all(arr[:, 0] == arr.shape[1] - 1):
        return None
    idx = arr[:, 1:]
    fans = [np.stack([idx[:, 0], idx[:, i], idx[:, i + 1]], axis=1) for i in range(1, idx.shape[1] - 1)]
    return np.stack(fans, axis=1).reshape(-1, 3)


def _polygon_faces(face_lines: List[str], path: Path, n_vert: int) -> np.ndarray:
    tris: List[Tuple[int, int, int]] = []
    for k, ln in enumerate(face_lines):
        tokens = ln.split()
        try:
            n = int(tokens[0]) if tokens else 0
            idx = [int(v) for v in tokens[1:1 + n]] if n >= 3 else []  # values after them (colours) are ignored
        except ValueError:
            raise ValueError(f"{path}: face {k} is not a list of integers: {ln!r}") from None
        if n < 3 or len(idx) != n:
            raise ValueError(f"{path}: face {k} must list n >= 3 vertex indices after its count, got {ln!r}")
        if min(idx) < 0 or max(idx) >= n_vert:
            raise ValueError(f"{path}: face {k} has a vertex index out of range 0..{n_vert - 1}: {ln!r}")
        tris.extend((idx[0], idx[i], idx[i + 1]) for i in range(1, n - 1))
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def write_off(path: Union[str, Path], vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a triangle (or polygon, ``faces [F, k]``) mesh as OFF, atomically."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] < 3:
        raise ValueError(f"write_off expects vertices [V, 3] and faces [F, k>=3], got {vertices.shape}, "
                         f"{faces.shape}")
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += [" ".join(repr(float(v)) for v in row) for row in vertices]
    lines += [" ".join(str(int(v)) for v in [len(row), *row]) for row in faces]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int,
                   rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform on the surface (area-weighted) and their face normals, both ``float64 [n, 3]``."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    cross = np.cross(b - a, c - a)
    area2 = np.linalg.norm(cross, axis=1)
    total = area2.sum()
    if not (faces.shape[0] and total > 0 and np.isfinite(total)):
        raise ValueError("the mesh has no triangle with a positive finite area")
    face = rng.choice(faces.shape[0], size=n, p=area2 / total)
    r1 = np.sqrt(rng.random((n, 1)))
    r2 = rng.random((n, 1))
    points = (1 - r1) * a[face] + r1 * (1 - r2) * b[face] + r1 * r2 * c[face]
    normals = cross[face] / area2[face, None]
    return points, normals


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre ``points [P, 3+]`` (xyz columns) at their mean and scale the farthest point to radius 1."""
    points = np.array(points, dtype=np.float64, copy=True)
    xyz = points[:, :3] - points[:, :3].mean(0)
    radius = np.linalg.norm(xyz, axis=1).max()
    points[:, :3] = xyz / radius if radius > 0 else xyz
    return points


class RandomScaleShift:
    """``p * s + t`` with per-axis ``s ~ U(scale)``, ``t ~ U(-shift, shift)`` (normals in columns 3:6 follow).

    Works on ``[P, 3]`` / ``[P, 6]`` tensors; seeded per process like the SNN-delays transforms.
    """

    def __init__(self, scale: Tuple[float, float] = (2.0 / 3.0, 1.5), shift: float = 0.2,
                 seed: Optional[int] = None) -> None:
        lo, hi = scale
        if not (0 < lo <= hi and np.isfinite(hi)):
            raise ValueError(f"scale must be a range (lo, hi) with 0 < lo <= hi, got {scale!r}")
        if not (isinstance(shift, numbers.Real) and 0 <= shift < np.inf):
            raise ValueError(f"shift must be a finite number >= 0, got {shift!r}")
        from spikelib.data.augment import _Seeded

        self.scale, self.shift = (float(lo), float(hi)), float(shift)
        self._seeded = _Seeded(seed)

    def draw(self) -> Tuple[np.ndarray, np.ndarray]:
        """One draw of ``(s [3], t [3])``."""
        rng = self._seeded.rng
        return rng.uniform(*self.scale, size=3), rng.uniform(-self.shift, self.shift, size=3)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[1] not in (3, 6):
            raise ValueError(f"RandomScaleShift expects points [P, 3] or [P, 6], got "
                             f"{tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__}")
        s, t = self.draw()
        s_t = torch.as_tensor(s, dtype=points.dtype)
        out = points.clone()
        out[:, :3] = points[:, :3] * s_t + torch.as_tensor(t, dtype=points.dtype)
        if points.shape[1] == 6:
            n = points[:, 3:] / s_t
            out[:, 3:] = n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return out


class ShufflePoints:
    """Permute the rows of a ``[P, F]`` point tensor (seeded per process like :class:`RandomScaleShift`)."""

    def __init__(self, seed: Optional[int] = None) -> None:
        from spikelib.data.augment import _Seeded

        self._seeded = _Seeded(seed)

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        if not isinstance(points, torch.Tensor) or points.dim() != 2:
            raise ValueError("ShufflePoints expects points [P, F]")
        return points[torch.from_numpy(self._seeded.rng.permutation(points.shape[0]))]


# --------------------------------------------------------------------------------------------------- data set
def _numbered(paths: Sequence[Path]) -> List[Path]:
    def key(p: Path) -> Tuple[int, str]:
        m = re.search(r"(\d+)\.h5$", p.name)
        return (int(m.group(1)) if m else -1, p.name)

    return sorted(paths, key=key)


class ModelNet40Dataset(Dataset):
    """ModelNet40 (or the synthetic shapes) from HDF5 files or ``.off`` meshes; see the module docstring.

    Args:
        root: folder with ``ply_data_{split}*.h5`` (also ``root/modelnet40_ply_hdf5_2048/``), or with
            ``<class>/{train,test}/*.off`` (also ``root/ModelNet40/``).
        split: ``"train"`` or ``"test"``.
        n_points: points per item (the first ``n_points`` of an HDF5 cloud; sampled from a mesh).
        use_normals: append normals, items ``[P, 6]`` (needs ``normal`` in the HDF5 files).
        format: ``"auto"``, ``"hdf5"`` or ``"off"``.
        normalize: centre and scale each cloud to the unit sphere.
        transform: called on the ``float32 [P, 3|6]`` tensor (e.g. :class:`RandomScaleShift`).
        seed: seed of the surface sampling of meshes.
        cache: keep sampled mesh clouds in memory (per process).
    """

    def __init__(self, root: Union[str, Path], split: str = "train", *, n_points: int = 1024,
                 use_normals: bool = False, format: str = "auto", normalize: bool = True,
                 transform=None, seed: int = 0, cache: bool = True) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if format not in ("auto", "hdf5", "off"):
            raise ValueError(f"format must be 'auto', 'hdf5' or 'off', got {format!r}")
        if isinstance(n_points, bool) or not isinstance(n_points, numbers.Integral) or n_points < 1:
            raise ValueError(f"n_points must be an int >= 1, got {n_points!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.root, self.split, self.n_points = Path(root), split, int(n_points)
        self.use_normals, self.normalize, self.transform = bool(use_normals), bool(normalize), transform
        self.seed, self.cache = int(seed), bool(cache)
        self._memory: Dict[int, np.ndarray] = {}
        h5_dir = self._find_h5() if format in ("auto", "hdf5") else None
        if h5_dir is not None:
            self.format = "hdf5"
            self._init_h5(h5_dir)
        else:
            off_dir = self._find_off() if format in ("auto", "off") else None
            if off_dir is None:
                raise FileNotFoundError(
                    f"no ModelNet40 {split} data under {self.root}: expected ply_data_{split}0.h5, ... (with "
                    f"shape_names.txt) in {self.root} or {self.root / 'modelnet40_ply_hdf5_2048'}, or "
                    f"<class>/{split}/*.off folders in {self.root} or {self.root / 'ModelNet40'}. Get them from "
                    f"{MODELNET40_URL}, or write the synthetic stand-in: `spikelib data synth-modelnet --out "
                    f"{self.root}`.")
            self.format = "off"
            self._init_off(off_dir)

    # ------------------------------------------------------------------ HDF5
    def _find_h5(self) -> Optional[Path]:
        for folder in (self.root, self.root / "modelnet40_ply_hdf5_2048"):
            if folder.is_dir() and list(folder.glob(f"ply_data_{self.split}*.h5")):
                return folder
        return None

    def _init_h5(self, folder: Path) -> None:
        names_file = folder / "shape_names.txt"
        self.class_names: List[str] = ([ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()]
                                       if names_file.is_file() else [f"class{i}" for i in range(40)])
        self.files = _numbered(list(folder.glob(f"ply_data_{self.split}*.h5")))
        labels, offsets = [], [0]
        for path in self.files:
            with open_h5(path) as f, h5_errors(path):
                data = require_dataset(f, "data", path, _H5_LAYOUT)
                label = require_dataset(f, "label", path, _H5_LAYOUT)
                if data.ndim != 3 or data.shape[2] != 3 or data.dtype.kind != "f":
                    raise ValueError(f"{path}: 'data' must be floating point of shape [N, P, 3], got {data.shape} "
                                     f"{data.dtype}")
                n = data.shape[0]
                if label.shape not in ((n,), (n, 1)) or label.dtype.kind not in "iu":
                    raise ValueError(f"{path}: 'label' must be integers of shape [{n}, 1] or [{n}], got "
                                     f"{label.shape} {label.dtype}")
                if data.shape[1] < self.n_points:
                    raise ValueError(f"{path}: clouds have {data.shape[1]} points, fewer than n_points "
                                     f"{self.n_points}")
                stored = [("data", data), ("label", label)]
                if self.use_normals:
                    normal = require_dataset(f, "normal", path, _H5_LAYOUT + " (use_normals=True needs 'normal')")
                    if normal.shape != data.shape or normal.dtype.kind != "f":
                        raise ValueError(f"{path}: 'normal' has shape {normal.shape} {normal.dtype}, expected "
                                         f"floating point {data.shape}")
                    stored.append(("normal", normal))
                for name, ds in stored:
                    check_stored(ds, path, name)  # before reading: unwritten data would read as zeros
                raw = label[()].reshape(-1)
            bad = (raw < 0) | (raw >= len(self.class_names))  # in the stored type: no wrap of large unsigned values
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{path}: label {raw[i].item()} of sample {i} is out of range "
                                 f"0..{len(self.class_names) - 1}")
            lab = raw.astype(np.int64)
            labels.append(lab)
            offsets.append(offsets[-1] + lab.size)
        self.labels = np.concatenate(labels)
        if self.labels.size == 0:
            raise ValueError(f"{folder}: empty data set (0 {self.split} samples)")
        self._offsets = np.asarray(offsets)
        self._handles = [LazyH5(p) for p in self.files]

    def _read_h5(self, i: int) -> np.ndarray:
        k = int(np.searchsorted(self._offsets, i, side="right") - 1)
        f = self._handles[k].file
        j = i - int(self._offsets[k])
        with h5_errors(self.files[k]):
            pts = np.asarray(f["data"][j, : self.n_points], dtype=np.float64)
            if self.use_normals:
                pts = np.concatenate([pts, np.asarray(f["normal"][j, : self.n_points], dtype=np.float64)], axis=1)
        return pts

    # ------------------------------------------------------------------ OFF
    def _find_off(self) -> Optional[Path]:
        for folder in (self.root, self.root / "ModelNet40"):
            if folder.is_dir() and any(d.is_dir() and (d / self.split).is_dir() for d in folder.iterdir()):
                return folder
        return None

    def _init_off(self, folder: Path) -> None:
        self.class_names = sorted(d.name for d in folder.iterdir() if d.is_dir() and (d / self.split).is_dir())
        self.files, labels = [], []
        for y, name in enumerate(self.class_names):
            for path in sorted((folder / name / self.split).glob("*.off")):
                self.files.append(path)
                labels.append(y)
        if not self.files:
            raise ValueError(f"{folder}: empty data set (no {self.split}/*.off meshes in the class folders)")
        self.labels = np.asarray(labels, dtype=np.int64)
        self._handles = []

    def _read_off(self, i: int) -> np.ndarray:
        verts, faces = read_off(self.files[i])
        pts, normals = sample_surface(verts, faces, self.n_points, np.random.default_rng([self.seed, i]))
        return np.concatenate([pts, normals], axis=1) if self.use_normals else pts

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def points(self, index: int) -> np.ndarray:
        """The (normalised) cloud of an item before ``transform``: ``float64 [P, 3|6]``."""
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        i = int(index) % len(self)
        if i in self._memory:
            return self._memory[i]
        pts = self._read_h5(i) if self.format == "hdf5" else self._read_off(i)
        if not np.all(np.isfinite(pts)):
            raise ValueError(f"{self.root}: sample {i} has non-finite coordinates")
        if self.normalize:
            pts = normalize_unit_sphere(pts)
        if self.cache and self.format == "off":
            self._memory[i] = pts
        return pts

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        pts = torch.from_numpy(np.array(self.points(index), dtype=np.float32, copy=True))
        if self.transform is not None:
            pts = self.transform(pts)
        return pts, int(self.labels[int(index) % len(self)])

    def close(self) -> None:
        """Close this process's HDF5 handles."""
        for h in self._handles:
            h.close()

    @property
    def is_open(self) -> bool:
        """Whether this process holds an open HDF5 handle."""
        return any(h.is_open for h in self._handles)

    def __repr__(self) -> str:
        return (f"ModelNet40Dataset(root={str(self.root)!r}, split={self.split!r}, format={self.format!r}, "
                f"n={len(self)}, n_points={self.n_points}, use_normals={self.use_normals}, "
                f"classes={len(self.class_names)})")

