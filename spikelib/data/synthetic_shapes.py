"""Synthetic 3D shapes written in the ``modelnet40_ply_hdf5_2048`` layout (the embedded default for point clouds).

Every class is a parametric solid built as a closed triangle mesh (shape parameters drawn per sample from a
class-specific range), then::

    points, normals = uniform area-weighted surface samples of the mesh   (spikelib.data.modelnet.sample_surface)
    anisotropy      p <- p * a,  a_k ~ U(1 - aniso, 1 + aniso) per axis;  n <- (n / a) / |n / a|
    pose            p <- R p, n <- R n, R uniform on SO(3) (QR of a Gaussian matrix, signs fixed, det +1)
    normalise       p <- (p - mean p) / max |p - mean p|      (unit sphere, as the ModelNet40 HDF5 files)
    noise           p <- p + N(0, noise^2)   (normals are not perturbed)

Classes (default order = label): sphere, cube (box with side ratios in [0.7, 1]), cylinder (height/radius in
[0.8, 2.5]), cone (height/radius in [1, 2.5]), torus (tube/ring radius in [0.2, 0.45]), pyramid (square base, height
in [0.7, 1.5] x side), octahedron, prism (triangular, length in [1, 2.5] x side), capsule (cylinder with hemispherical
ends) and hemisphere. Files: ``ply_data_{train,test}<k>.h5`` with ``data`` float32 ``[N, P, 3]``, ``normal`` float32
``[N, P, 3]``, ``label`` uint8 ``[N, 1]`` (at most 2048 shapes per file, as the official files), ``shape_names.txt``,
``train_files.txt`` / ``test_files.txt``; each written atomically. Deterministic in ``seed``; balanced classes. Files
``ply_data_*.h5`` of an earlier synthetic run that this one does not rewrite are removed (the reader would mix them
in); any other such file is an error.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from spikelib.data._hdf5 import atomic_path
from spikelib.data.modelnet import normalize_unit_sphere, sample_surface

__all__ = ["SHAPE_CLASSES", "shape_mesh", "synthetic_shape", "write_synthetic_shapes"]

Mesh = Tuple[np.ndarray, np.ndarray]


def _revolve(profile: np.ndarray, segments: int = 40) -> Mesh:
    """Surface of revolution about z of a profile ``[(r, z), ...]`` (top to bottom); ends with r = 0 are poles."""
    angles = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    rings = [np.stack([r * np.cos(angles), r * np.sin(angles), np.full(segments, z)], 1) for r, z in profile]
    verts = np.concatenate(rings)
    faces = []
    for k in range(len(profile) - 1):
        a0, b0 = k * segments, (k + 1) * segments
        for s in range(segments):
            s1 = (s + 1) % segments
            faces.append((a0 + s, b0 + s, b0 + s1))
            faces.append((a0 + s, b0 + s1, a0 + s1))
    return verts, np.asarray(faces, dtype=np.int64)


def _cap_profile(r: float, z_top: float, z_bot: float) -> List[Tuple[float, float]]:
    return [(0.0, z_top), (r, z_top), (r, z_bot), (0.0, z_bot)]


def _sphere_profile(radius: float, z0: float, a0: float, a1: float, n: int = 16) -> List[Tuple[float, float]]:
    """Profile points on a circle arc from polar angle a0 to a1 (0 = north pole)."""
    return [(radius * np.sin(a), z0 + radius * np.cos(a)) for a in np.linspace(a0, a1, n)]


def _box(sx: float, sy: float, sz: float) -> Mesh:
    v = np.array([[x, y, z] for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)], dtype=np.float64)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return v, np.asarray([(q[0], q[1], q[2]) for q in quads] + [(q[0], q[2], q[3]) for q in quads], dtype=np.int64)


def _polyhedron(verts: Sequence[Sequence[float]], faces: Sequence[Sequence[int]]) -> Mesh:
    tris = [(f[0], f[i], f[i + 1]) for f in faces for i in range(1, len(f) - 1)]
    return np.asarray(verts, dtype=np.float64), np.asarray(tris, dtype=np.int64)


def _torus(ring: float, tube: float, n_ring: int = 40, n_tube: int = 20) -> Mesh:
    u = np.linspace(0, 2 * np.pi, n_ring, endpoint=False)
    v = np.linspace(0, 2 * np.pi, n_tube, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    verts = np.stack([(ring + tube * np.cos(vv)) * np.cos(uu), (ring + tube * np.cos(vv)) * np.sin(uu),
                      tube * np.sin(vv)], -1).reshape(-1, 3)
    faces = []
    for i in range(n_ring):
        for j in range(n_tube):
            a, b = i * n_tube + j, ((i + 1) % n_ring) * n_tube + j
            c, d = ((i + 1) % n_ring) * n_tube + (j + 1) % n_tube, i * n_tube + (j + 1) % n_tube
            faces += [(a, b, c), (a, c, d)]
    return verts, np.asarray(faces, dtype=np.int64)


def _sphere(rng):
    return _revolve(np.array(_sphere_profile(1.0, 0.0, 0.0, np.pi, 20)))


def _cube(rng):
    return _box(1.0, *rng.uniform(0.7, 1.0, size=2))


def _cylinder(rng):
    h = rng.uniform(0.8, 2.5) / 2
    return _revolve(np.array(_cap_profile(1.0, h, -h)))


def _cone(rng):
    h = rng.uniform(1.0, 2.5)
    return _revolve(np.array([(0.0, h), (1.0, 0.0), (0.0, 0.0)]))


def _torus_shape(rng):
    return _torus(1.0, rng.uniform(0.2, 0.45))


def _pyramid(rng):
    h = rng.uniform(0.7, 1.5) * 2
    return _polyhedron([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0], [0, 0, h]],
                       [[0, 3, 2, 1], [0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])


def _octahedron(rng):
    return _polyhedron([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
                       [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])


def _prism(rng):
    length = rng.uniform(1.0, 2.5)
    tri = [[1, 0], [-0.5, np.sqrt(3) / 2], [-0.5, -np.sqrt(3) / 2]]
    verts = [[x, y, -length / 2] for x, y in tri] + [[x, y, length / 2] for x, y in tri]
    return _polyhedron(verts, [[0, 2, 1], [3, 4, 5], [0, 1, 4, 3], [1, 2, 5, 4], [2, 0, 3, 5]])


def _capsule(rng):
    h = rng.uniform(0.5, 2.0) / 2
    top = _sphere_profile(1.0, h, 0.0, np.pi / 2, 10)
    bottom = _sphere_profile(1.0, -h, np.pi / 2, np.pi, 10)
    return _revolve(np.array(top + bottom))


def _hemisphere(rng):
    return _revolve(np.array(_sphere_profile(1.0, 0.0, 0.0, np.pi / 2, 12) + [(0.0, 0.0)]))


_BUILDERS: Dict[str, Callable[[np.random.Generator], Mesh]] = {
    "sphere": _sphere, "cube": _cube, "cylinder": _cylinder, "cone": _cone, "torus": _torus_shape,
    "pyramid": _pyramid, "octahedron": _octahedron, "prism": _prism, "capsule": _capsule, "hemisphere": _hemisphere,
}
SHAPE_CLASSES: Tuple[str, ...] = tuple(_BUILDERS)


def shape_mesh(name: str, rng: np.random.Generator) -> Mesh:
    """The canonical mesh of a class with its shape parameters drawn from ``rng``: ``(vertices, triangles)``."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown shape class {name!r}; choose from {list(SHAPE_CLASSES)}")
    return _BUILDERS[name](rng)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def synthetic_shape(name: str, n_points: int, rng: np.random.Generator, noise: float = 0.01,
                    aniso: float = 0.15) -> Tuple[np.ndarray, np.ndarray]:
    """One sample: ``(points [n_points, 3], normals [n_points, 3])`` (float32); see the module docstring."""
    verts, faces = shape_mesh(name, rng)
    pts, normals = sample_surface(verts, faces, n_points, rng)
    scale = rng.uniform(1 - aniso, 1 + aniso, size=3)
    pts = pts * scale
    normals = normals / scale
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    rot = _rotation(rng)
    pts, normals = pts @ rot.T, normals @ rot.T
    pts = normalize_unit_sphere(pts) + rng.normal(0.0, noise, size=pts.shape)
    return pts.astype(np.float32), normals.astype(np.float32)


def _is_synthetic(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "spikelib_synthetic" in f.attrs
    except OSError:
        return False


def _refuse_foreign(path: Path) -> None:
    if path.exists() and not _is_synthetic(path):
        raise FileExistsError(f"{path} exists and was not written by the synthetic shape generator (real ModelNet40 "
                              f"data?); choose another folder or pass overwrite=True (--force)")


def _stale_files(out: Path, counts: Dict[str, int], per_file: int) -> List[Path]:
    """Files ``ply_data_<split>*.h5`` in ``out`` that this run does not write: the reader would mix them in. Those of
    an earlier synthetic run are returned (to be removed); any other one is an error, even with ``overwrite``."""
    stale = []
    for split, n in counts.items():
        ours = {f"ply_data_{split}{k}.h5" for k in range((n + per_file - 1) // per_file)}
        for path in sorted(out.glob(f"ply_data_{split}*.h5")):
            if path.name in ours:
                continue
            if not _is_synthetic(path):
                raise FileExistsError(f"{path} is not written by this run and not by the synthetic generator; "
                                      f"ModelNet40Dataset would read it together with the new files: move it away "
                                      f"or choose another folder")
            stale.append(path)
    return stale


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def write_synthetic_shapes(
    out_dir: Union[str, Path],
    n_train: int = 800,
    n_test: int = 200,
    seed: int = 0,
    *,
    n_points: int = 2048,
    classes: Optional[Sequence[str]] = None,
    noise: float = 0.01,
    aniso: float = 0.15,
    per_file: int = 2048,
    progress: bool = False,
    overwrite: bool = False,
) -> Dict[str, object]:
    """Write synthetic shapes in the ``modelnet40_ply_hdf5_2048`` layout (see the module docstring).

    Returns:
        ``{"train": [paths], "test": [paths], "shape_names": path}``.
    """
    import h5py

    n_train, n_test = _check_int(n_train, "n_train", 1), _check_int(n_test, "n_test", 1)
    seed, n_points = _check_int(seed, "seed", 0), _check_int(n_points, "n_points", 1)
    per_file = _check_int(per_file, "per_file", 1)
    classes = list(SHAPE_CLASSES) if classes is None else list(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be >= 2 distinct names, got {classes}")
    for name in classes:
        if name not in _BUILDERS:
            raise ValueError(f"unknown shape class {name!r}; choose from {list(SHAPE_CLASSES)}")
    if not (isinstance(noise, numbers.Real) and 0 <= noise < np.inf):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    if not (isinstance(aniso, numbers.Real) and 0 <= aniso < 1):
        raise ValueError(f"aniso must be in [0, 1), got {aniso!r}")
    out = Path(out_dir)
    if not overwrite:
        for split, n in (("train", n_train), ("test", n_test)):
            for k in range((n + per_file - 1) // per_file):
                _refuse_foreign(out / f"ply_data_{split}{k}.h5")
    stale = _stale_files(out, {"train": n_train, "test": n_test}, per_file) if out.is_dir() else []
    out.mkdir(parents=True, exist_ok=True)
    result: Dict[str, object] = {}
    for split, n, stream in (("train", n_train, 1), ("test", n_test, 2)):
        rng = np.random.default_rng([seed, stream])
        labels = rng.permutation(np.arange(n) % len(classes)).astype(np.uint8)
        data = np.empty((n, n_points, 3), dtype=np.float32)
        normal = np.empty((n, n_points, 3), dtype=np.float32)
        iterator = range(n)
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, desc=f"synthetic shapes {split}", dynamic_ncols=True)
        for i in iterator:
            data[i], normal[i] = synthetic_shape(classes[labels[i]], n_points, rng, float(noise), float(aniso))
        paths = []
        for k, start in enumerate(range(0, n, per_file)):
            path = out / f"ply_data_{split}{k}.h5"
            with atomic_path(path) as tmp:
                with h5py.File(tmp, "w") as f:
                    f.create_dataset("data", data=data[start:start + per_file])
                    f.create_dataset("normal", data=normal[start:start + per_file])
                    f.create_dataset("label", data=labels[start:start + per_file, None])
                    f.attrs["spikelib_synthetic"] = json.dumps({
                        "generator": "spikelib.data.synthetic_shapes", "split": split, "seed": seed,
                        "classes": classes, "noise": float(noise), "aniso": float(aniso)})
            paths.append(path)
        listing = out / f"{split}_files.txt"
        with atomic_path(listing) as tmp:
            tmp.write_text("".join(f"data/modelnet40_ply_hdf5_2048/{p.name}\n" for p in paths))
        result[split] = paths
    for path in stale:  # an earlier, larger synthetic run's files: never read together with these
        path.unlink()
    names = out / "shape_names.txt"
    with atomic_path(names) as tmp:
        tmp.write_text("".join(f"{c}\n" for c in classes))
    result["shape_names"] = names
    return result
