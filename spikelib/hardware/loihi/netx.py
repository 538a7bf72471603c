"""Export a :class:`~spikelib.hardware.loihi.network.LoihiNetwork` to lava-dl's netx HDF5 format, and import it back.

The layout is the one lava-nc/lava-dl's ``src/lava/lib/dl/netx/hdf5.py`` (``Network._create``, ``create_dense``,
``get_neuron_params``) and ``src/lava/lib/dl/netx/utils.py`` (``NetDict``) read::

    /layer/0/type   b"input"            /layer/0/shape   [input_size]      (no neuron group: spikes enter unchanged)
    /layer/i/type   b"dense"            /layer/i/shape   [out]
    /layer/i/weight [out, in] int       /layer/i/bias    [out] int (opt.)  /layer/i/delay [out, in] or [out] (opt.)
    /layer/i/neuron/type b"CUBA", iDecay, vDecay, vThMant, refDelay (=1), gradedSpike (=False)   (scalars)

    /layer/i/type   b"conv"  shape [C_out, H_out, W_out], weight [C_out, C_in / groups, kh, kw], stride, padding,
                    dilation ((y, x) pairs; netx reverses them to (x, y)), groups, bias [C_out] (opt.), neuron/ as above
    /layer/i/type   b"flatten"          (written between a conv and a following dense layer)

For conv networks the input layer's ``shape`` is ``[C, H, W]`` (netx reverses it to Lava's ``(W, H, C)``).
``type`` strings are stored as ``S`` arrays of shape ``(1,)`` (as lava-dl's own exporters write them). The root
attribute ``spikelib_meta`` (JSON) keeps the quantisation facts; netx ignores it. Files are written atomically
(temporary file in the same folder, fsync, ``os.replace``). :func:`load_netx` reads dense networks only (with or
without the input layer: lava-dl slayer's ``export_hdf5`` starts with the first dense layer and stores integer-valued
float weights and delays) and raises :class:`NetxFormatError` naming the layer and field for anything malformed or
unsupported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Union

import numpy as np
import torch

from spikelib._atomic import atomic_path
from spikelib.hardware.loihi.network import LoihiLayer, LoihiNetwork

__all__ = ["export_netx", "load_netx", "NetxFormatError"]

PathLike = Union[str, os.PathLike]


class NetxFormatError(ValueError):
    """A netx HDF5 file that is malformed or uses layers spikelib cannot import."""


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a core dependency
        raise ImportError("netx export/import needs h5py (a core dependency of spikelib: pip install h5py)") from exc
    return h5py


def _write_type(group, text: str) -> None:
    group.create_dataset("type", (1,), "S10", [text.encode("ascii")])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _write_layer(g, layer) -> None:
    if layer.conv is not None:
        c = layer.conv
        _write_type(g, "conv")
        g.create_dataset("shape", data=np.array(c.out_shape(layer.weight), dtype=np.int64))
        for key, value in (("stride", c.stride), ("padding", c.padding), ("dilation", c.dilation)):
            g.create_dataset(key, data=np.array(value, dtype=np.int64))
        g.create_dataset("groups", data=np.int64(c.groups))
    else:
        _write_type(g, "dense")
        g.create_dataset("shape", data=np.array([layer.out_features], dtype=np.int64))
    g.create_dataset("weight", data=layer.weight.numpy().astype(np.int64))
    if layer.bias is not None:
        g.create_dataset("bias", data=layer.bias.numpy().astype(np.int64))
    if layer.delay is not None:
        g.create_dataset("delay", data=layer.delay.numpy().astype(np.int64))
    n = g.create_group("neuron")
    _write_type(n, "CUBA")
    n.create_dataset("iDecay", data=np.int64(layer.i_decay))
    n.create_dataset("vDecay", data=np.int64(layer.v_decay))
    n.create_dataset("vThMant", data=np.int64(layer.vth))
    n.create_dataset("refDelay", data=np.int64(1))
    n.create_dataset("gradedSpike", data=np.bool_(False))
    g.attrs["name"] = layer.name


def export_netx(net: LoihiNetwork, path: PathLike) -> Path:
    """Write ``net`` to ``path`` in netx HDF5 format (atomically). Returns the path."""
    if not isinstance(net, LoihiNetwork):
        raise TypeError(f"net must be a LoihiNetwork, got {type(net).__name__}")
    h5py = _h5py()
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"path: folder {path.parent} does not exist")
    with atomic_path(path, create_parent=False) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["spikelib_meta"] = json.dumps(_jsonable(net.meta))
        layers = f.create_group("layer")
        g = layers.create_group("0")
        _write_type(g, "input")
        first = net.layers[0]
        in_shape = list(first.conv.in_shape) if first.conv is not None else [net.input_size]
        g.create_dataset("shape", data=np.array(in_shape, dtype=np.int64))
        index, previous_conv = 1, False
        for layer in net.layers:
            if previous_conv and layer.conv is None:
                _write_type(layers.create_group(str(index)), "flatten")
                index += 1
            g = layers.create_group(str(index))
            index += 1
            previous_conv = layer.conv is not None
            _write_layer(g, layer)
    return path


def _read_type(group, where: str) -> str:
    if "type" not in group:
        raise NetxFormatError(f"{where}: missing 'type'")
    value = group["type"][()]
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise NetxFormatError(f"{where}: 'type' must hold one string, got shape {value.shape}")
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    if isinstance(value, str):
        return value
    raise NetxFormatError(f"{where}: 'type' must be a string, got {type(value).__name__}")


def _read_int_array(group, key: str, where: str) -> np.ndarray:
    h5py = _h5py()
    if key not in group or not isinstance(group[key], h5py.Dataset):
        raise NetxFormatError(f"{where}: missing dataset '{key}'")
    value = np.asarray(group[key][()])
    if value.dtype.kind not in "iub":
        if value.dtype.kind == "f" and np.all(np.isfinite(value)) and np.all(value == np.round(value)):
            return value.astype(np.int64)
        raise NetxFormatError(f"{where}: '{key}' must hold integers, got dtype {value.dtype}")
    return value.astype(np.int64)


def _read_scalar(group, key: str, where: str) -> int:
    value = _read_int_array(group, key, where)
    if value.size != 1:
        raise NetxFormatError(f"{where}: '{key}' must be a scalar, got shape {value.shape}")
    return int(value.reshape(-1)[0])


def _read_conv(g, where: str, in_shape, weight: np.ndarray):
    from spikelib.hardware.loihi.network import ConvGeometry

    if in_shape is None:
        raise NetxFormatError(f"{where}: a conv layer needs a (C, H, W) input: an input layer of 3-d shape or a "
                              f"conv layer before it")
    if weight.ndim != 4:
        raise NetxFormatError(f"{where}: conv 'weight' must be [C_out, C_in / groups, kh, kw], "
                              f"got {list(weight.shape)}")
    args = {}
    for key in ("stride", "padding", "dilation"):
        value = _read_int_array(g, key, where).reshape(-1)
        args[key] = tuple(int(v) for v in (value if value.size == 2 else np.repeat(value, 2)[:2]))
    try:
        return ConvGeometry(in_shape, groups=_read_scalar(g, "groups", where), **args)
    except ValueError as exc:
        raise NetxFormatError(f"{where}: {exc}") from exc


def load_netx(path: PathLike) -> LoihiNetwork:
    """Read a netx HDF5 file of an input layer followed by dense CUBA layers (see the module docstring)."""
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"netx file {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise NetxFormatError(f"{path} is not an HDF5 file ({exc})") from exc
    with f:
        if "layer" not in f or not isinstance(f["layer"], h5py.Group):
            raise NetxFormatError(f"{path}: no 'layer' group (not a netx network file)")
        group = f["layer"]
        keys = sorted(group.keys(), key=lambda k: (not k.isdigit(), int(k) if k.isdigit() else 0, k))
        if keys != [str(i) for i in range(len(keys))] or not keys:
            raise NetxFormatError(f"{path}: layers must be named '0', '1', ... without gaps, got {list(group.keys())}")
        meta: Dict[str, Any] = {}
        if "spikelib_meta" in f.attrs:
            try:
                meta = json.loads(f.attrs["spikelib_meta"])
            except (TypeError, ValueError) as exc:
                raise NetxFormatError(f"{path}: attribute 'spikelib_meta' is not valid JSON ({exc})") from exc
        first = group["0"]
        kind = _read_type(first, "layer 0")
        if kind == "input":
            if "neuron" in first:
                raise NetxFormatError("layer 0: input layers with a neuron group (graded/biased input) are not "
                                      "supported")
            shape = _read_int_array(first, "shape", "layer 0")
            if shape.size < 1 or np.any(shape < 1):
                raise NetxFormatError(f"layer 0: 'shape' must be positive sizes, got {shape.tolist()}")
            input_size = int(np.prod(shape))
            dense_keys = keys[1:]
            current = tuple(int(v) for v in shape) if shape.size == 3 else None  # (C, H, W) for conv inputs
        elif kind == "dense":  # lava-dl slayer's exporters start with the first dense layer
            weight0 = _read_int_array(first, "weight", "layer 0")
            if weight0.ndim != 2:
                raise NetxFormatError(f"layer 0: 'weight' must be a matrix [out, in], got shape {list(weight0.shape)}")
            input_size = int(weight0.shape[1])
            dense_keys = keys
            current = None
        else:
            raise NetxFormatError(f"layer 0: expected type 'input' or 'dense', got {kind!r}")
        layers: List[LoihiLayer] = []
        for key in dense_keys:
            where = f"layer {key}"
            g = group[key]
            kind = _read_type(g, where)
            if kind == "flatten":
                current = None
                continue
            if kind not in ("dense", "conv"):
                raise NetxFormatError(f"{where}: layer type {kind!r} is not supported (dense, conv, flatten import)")
            weight = _read_int_array(g, "weight", where)
            out_shape = _read_int_array(g, "shape", where)
            out = int(np.prod(out_shape))
            geometry = None
            if kind == "conv":
                geometry = _read_conv(g, where, current, weight)
                current = tuple(int(v) for v in out_shape)
            else:
                if weight.ndim == 1 and weight.size % max(out, 1) == 0:
                    weight = weight.reshape(out, -1)
                if weight.ndim != 2 or weight.shape[0] != out:
                    raise NetxFormatError(f"{where}: 'weight' must have shape [{out}, in], got {list(weight.shape)}")
            if "neuron" not in g:
                raise NetxFormatError(f"{where}: missing 'neuron' group")
            n = g["neuron"]
            ntype = _read_type(n, f"{where}/neuron")
            if ntype not in ("CUBA", "LOIHI"):
                raise NetxFormatError(f"{where}/neuron: neuron type {ntype!r} is not supported (only CUBA)")
            if "gradedSpike" in n and bool(np.asarray(n["gradedSpike"][()]).reshape(-1)[0]):
                raise NetxFormatError(f"{where}/neuron: graded spikes are not supported")
            bias = torch.from_numpy(_read_int_array(g, "bias", where)) if "bias" in g else None
            delay = torch.from_numpy(_read_int_array(g, "delay", where)) if "delay" in g else None
            if delay is not None and delay.dim() == 0:
                delay = delay.expand(out).clone()
            try:
                layers.append(LoihiLayer(
                    weight=torch.from_numpy(weight), bias=bias, delay=delay,
                    i_decay=_read_scalar(n, "iDecay", f"{where}/neuron"),
                    v_decay=_read_scalar(n, "vDecay", f"{where}/neuron"),
                    vth=_read_scalar(n, "vThMant", f"{where}/neuron"),
                    name=str(g.attrs.get("name", f"{kind}{key}")), conv=geometry,
                ))
                if geometry is not None and geometry.out_shape(layers[-1].weight) != current:
                    raise ValueError(f"'shape' {list(current)} does not match the convolution's output "
                                     f"{list(geometry.out_shape(layers[-1].weight))}")
            except (ValueError, TypeError) as exc:
                raise NetxFormatError(f"{where}: {exc}") from exc
        if not layers:
            raise NetxFormatError(f"{path}: no dense layers after the input layer")
        try:
            return LoihiNetwork(input_size=input_size, layers=layers, meta=meta)
        except ValueError as exc:
            raise NetxFormatError(f"{path}: {exc}") from exc
