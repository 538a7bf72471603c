"""Read the data flow of any ``nn.Module`` built from declared layers: :func:`trace`.

One forward pass on an example input is recorded (the nirtorch idea of reading a model's data flow by running it,
neuromorphs/nirtorch ``graph_extraction``): hooks on every declared module (:func:`spikelib.graph.declared_layers`)
note which tensors it reads and writes, and a ``TorchFunctionMode`` notes the arithmetic a ``forward`` does outside
declared layers. A tensor is traced to its producer by identity of its memory (storage, offset, shape and strides),
so views connect directly; so do copies, dtype changes and reshapes (``reshape``/``view``/``flatten``, folding time
into the batch), which keep the elements in their order; an addition of two traced tensors becomes an :class:`~spikelib.graph.nodes.Add` node (a
residual connection written as ``x + f(x)``); any other operation becomes a
:class:`~spikelib.graph.nodes.Function` node naming it, which a consumer that needs declared layers rejects with a
message naming it (:meth:`~spikelib.graph.Graph.check_no_functions`).

Shapes are reported per sample: the example is ``[T, B, ...]`` with ``B >= 2``, and a tensor is read as time first
``[T, B, ...]`` or as time folded into the batch ``[T * B, ...]`` (``T`` follows each node: a
:class:`~spikelib.graph.nodes.TimePad` lengthens it, a :class:`~spikelib.graph.nodes.Reduce` removes it).
Every tensor recorded is kept alive until the trace ends, so no memory is reused within the pass.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from spikelib.graph import nodes as N
from spikelib.graph.declare import declared_layers
from spikelib.graph.graph import Graph, GraphNode

__all__ = ["TraceError", "trace", "infer_input_shape"]


class TraceError(ValueError):
    """The model could not be run on the example input (the message says why and how to fix it)."""

_ADD = {torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__}
_IADD = {torch.Tensor.add_, torch.Tensor.__iadd__}
# Functions that keep the elements and their row-major order (copies, dtype changes, reshapes: a reshape may copy a
# non-contiguous tensor, but never reorders it): the result has the input's producer; per-sample shapes are read
# from the tensors each layer receives.
_PASS = {"clone", "contiguous", "to", "float", "double", "half", "bfloat16", "type", "type_as", "detach", "reshape",
         "view", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as", "reshape_as"}


def _tensor_of(value: Any) -> Optional[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return value
    feats = getattr(value, "features", None)  # a SparseSpikeTensor
    return feats if isinstance(feats, torch.Tensor) else None


def _flat_tensors(values: Any) -> List[torch.Tensor]:
    out: List[torch.Tensor] = []
    if isinstance(values, (tuple, list)):
        for v in values:
            out.extend(_flat_tensors(v))
    elif isinstance(values, dict):
        for v in values.values():
            out.extend(_flat_tensors(v))
    else:
        t = _tensor_of(values)
        if t is not None:
            out.append(t)
    return out


def _key(t: torch.Tensor) -> Tuple[int, int, Tuple[int, ...], Tuple[int, ...]]:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))


def _span(t: torch.Tensor) -> Tuple[int, int, int]:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel())


def infer_input_shape(model: nn.Module) -> Tuple[int, ...]:
    """``(in_features,)`` when the first declared layer is a dense or delayed synapse; otherwise an error asking for
    the input shape."""
    layers = declared_layers(model)
    for name, module, node in layers:
        if isinstance(node, (N.Free, N.TimePad)):
            continue  # shape-preserving
        if isinstance(node, (N.Affine, N.DelayedAffine)):
            return (int(node.weight.shape[1]),)
        raise ValueError(f"input_shape is needed: the first layer {name!r} ({type(module).__name__}) does not tell the "
                         f"size of one input sample (pass input_shape, per sample, without time and batch)")
    raise ValueError("the model has no declared layers")


class _Recorder(TorchFunctionMode):
    """Records producers of tensors: declared modules (through hooks) and functions outside them (this mode)."""

    def __init__(self, steps: int, batch: int) -> None:
        super().__init__()
        self.steps, self.batch = steps, batch
        self.exact: Dict[Tuple[Any, ...], str] = {}
        self.spans: Dict[Tuple[int, int, int], str] = {}
        self.alive: List[torch.Tensor] = []
        self.nodes: Dict[str, GraphNode] = {}
        self.depth = 0
        self.owner: List[str] = [""]
        self.counter: Dict[str, int] = {}
        self.pending: List[Tuple[List[str], List[Any], Optional[int]]] = []

    # ------------------------------------------------------------------------------------------------ registry
    def register(self, t: torch.Tensor, name: str) -> None:
        self.alive.append(t)
        self.exact[_key(t)] = name
        if t.is_contiguous():
            self.spans[_span(t)] = name

    def producer(self, t: torch.Tensor) -> Optional[str]:
        name = self.exact.get(_key(t))
        if name is None and t.is_contiguous():
            name = self.spans.get(_span(t))  # a reshape of contiguous data: same elements in the same order
        return name

    def per_sample(self, t: torch.Tensor, steps: Optional[int]) -> Tuple[Optional[Tuple[int, ...]], Optional[int]]:
        """(per-sample shape, time steps) of ``t`` given the time steps of its source."""
        shape = tuple(int(s) for s in t.shape)
        B = self.batch
        if steps is not None and len(shape) >= 2 and shape[0] == steps and shape[1] == B:
            return shape[2:], steps
        if steps is not None and len(shape) >= 1 and shape[0] == steps * B:
            return shape[1:], steps
        if len(shape) >= 1 and shape[0] == B:
            return shape[1:], None
        return None, steps

    def add_node(self, g: GraphNode, outputs: Sequence[torch.Tensor]) -> None:
        self.nodes[g.name] = g
        for t in outputs:
            self.register(t, g.name)

    def unique(self, base: str) -> str:
        k = self.counter.get(base, 0)
        self.counter[base] = k + 1
        return base if k == 0 and base not in self.nodes else f"{base}#{k}"

    def sources(self, tensors: Sequence[torch.Tensor]) -> Tuple[List[str], List[Any], Optional[int]]:
        names, shapes, steps = [], [], None
        for t in tensors:
            src = self.producer(t)
            if src is None:
                src = self.constant(t)
            src_steps = self.nodes[src].steps
            shape, st = self.per_sample(t, src_steps)
            names.append(src)
            shapes.append(shape)
            if steps is None:
                steps = st
        return names, shapes, steps

    def constant(self, t: torch.Tensor) -> str:
        name = self.unique(f"{self.owner[-1]}:constant" if self.owner[-1] else "constant")
        self.add_node(GraphNode(name, N.Function("a tensor made inside forward()", self.owner[-1]), None, [], [],
                                tuple(t.shape), None), [t])
        return name

    # ------------------------------------------------------------------------------------- functions (this mode)
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth > 0:
            return out
        results = _flat_tensors(out)
        if not results:
            return out
        inputs = _flat_tensors(list(args) + list(kwargs.values()))
        traced = [t for t in inputs if self.producer(t) is not None]
        if not traced:
            return out  # arithmetic on constants and parameters only: not part of the data flow
        fname = getattr(func, "__name__", repr(func))
        inplace = fname.endswith("_") and not fname.startswith("__") or fname.startswith("__i")
        if not inplace:
            spans = {_span(t) for t in inputs if t.is_contiguous()}
            if len(results) == 1 and results[0].is_contiguous() and _span(results[0]) in spans:
                return out  # a reshape/view of an input that keeps the element order: same producer
            if fname in _PASS and len(traced) == 1 and len(results) == 1:
                self.register(results[0], self.producer(traced[0]))  # a copy or a dtype change
                return out
        if func in _ADD | _IADD and len(traced) == 2 and not kwargs:
            node: N.Node = N.Add()
            base = "add"
        else:
            node = N.Function(fname, self.owner[-1])
            base = fname
        name = self.unique(f"{self.owner[-1]}:{base}" if self.owner[-1] else base)
        srcs, shapes, steps = self.sources(traced if traced else inputs)
        shape, steps = self.per_sample(results[0], steps)
        self.add_node(GraphNode(name, node, None, srcs, shapes, shape, steps), results)
        return out


def _out_steps(node: N.Node, in_steps: Optional[int]) -> Optional[int]:
    if isinstance(node, N.TimePad) and in_steps is not None:
        return in_steps + node.steps
    if isinstance(node, N.Reduce):
        return None
    return in_steps


def trace(model: nn.Module, example: Any = None, *, input_shape: Optional[Sequence[int]] = None, steps: int = 3,
          batch: int = 2) -> Graph:
    """The :class:`~spikelib.graph.Graph` of ``model`` from one recorded forward pass.

    Args:
        model: any module built from declared layers (its mode, train or eval, is used as it is; the pass runs
            without gradients and the model's kept state is not changed: stateful neurons are reset after it).
        example: the input to run (time first ``[T, B, ...]`` with ``B >= 2``); by default random spikes of shape
            ``[steps, batch, *input_shape]``.
        input_shape: per-sample input shape (no time, no batch); inferred when the first layer is a dense or delayed
            synapse.
        steps, batch: ``T`` and ``B`` of the default example.

    Raises:
        UndeclaredLayerError: a module declares nothing and is not a plain container.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers = declared_layers(model)
    if example is None:
        shape = tuple(int(s) for s in (input_shape if input_shape is not None else infer_input_shape(model)))
        if any(s < 1 for s in shape):
            raise ValueError(f"input_shape must hold positive sizes, got {shape}")
        for name, value in (("steps", steps), ("batch", batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "batch" else 1):
                raise ValueError(f"{name} must be an int >= {2 if name == 'batch' else 1}, got {value!r}")
        param = next(iter(model.parameters()), None)
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.get_default_dtype()
        device = param.device if param is not None else torch.device("cpu")
        g = torch.Generator().manual_seed(0)
        example = (torch.rand((steps, batch) + shape, generator=g) < 0.5).to(dtype=dtype, device=device)
    x = _tensor_of(example)
    if x is None or x.dim() < 2:
        raise ValueError("example must be a tensor [T, B, ...] (time first)")
    T, B = int(x.shape[0]), int(x.shape[1])
    if B < 2:
        raise ValueError(f"the example's batch (dim 1) must be >= 2 to tell time from batch, got {B}")
    rec = _Recorder(T, B)
    kept = [(m, m.state) for m in model.modules() if hasattr(m, "state") and hasattr(m, "reset_state")]
    rec.add_node(GraphNode("input", N.Input(tuple(int(s) for s in x.shape[2:])), None, [], [],
                           tuple(int(s) for s in x.shape[2:]), T), [x])
    handles = []
    names = {id(m): n for n, m, _ in layers}

    def pre(module: nn.Module, args: Tuple[Any, ...]) -> None:
        if rec.depth == 0:
            srcs, shapes, steps_in = rec.sources(_flat_tensors(args))
            rec.pending.append((srcs, shapes, steps_in))
        rec.depth += 1

    def post(module: nn.Module, args: Tuple[Any, ...], output: Any) -> None:
        rec.depth -= 1
        if rec.depth > 0:
            return
        srcs, shapes, steps_in = rec.pending.pop()
        node = nodes_of[id(module)]
        name = rec.unique(names[id(module)] or "<model>")
        outs = _flat_tensors(output)
        steps_out = _out_steps(node, steps_in)
        shape = rec.per_sample(outs[0], steps_out)[0] if outs else None
        rec.add_node(GraphNode(name, node, module, srcs, shapes, shape, steps_out), outs)

    def owner_pre(name: str):
        def hook(module: nn.Module, args: Tuple[Any, ...]) -> None:
            rec.owner.append(name)
        return hook

    def owner_post(module: nn.Module, args: Tuple[Any, ...], output: Any) -> None:
        rec.owner.pop()

    nodes_of = {id(m): node for _, m, node in layers}
    try:
        for name, module in model.named_modules():
            if id(module) in nodes_of:
                handles.append(module.register_forward_pre_hook(pre))
                handles.append(module.register_forward_hook(post))
            else:
                handles.append(module.register_forward_pre_hook(owner_pre(name or type(module).__name__)))
                handles.append(module.register_forward_hook(owner_post))
        with torch.no_grad(), rec:
            try:
                result = model(example)
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise TraceError(
                    f"tracing {type(model).__name__}: the forward pass on an example of shape "
                    f"{tuple(x.shape)} (time first [T, B, ...]) failed: {exc}. The model must take time-first input; "
                    f"per-step layers such as nn.Conv2d need a container that folds time into the batch "
                    f"(spikelib.layers.Sequential)") from exc
    finally:
        for h in handles:
            h.remove()
        for module, state in kept:
            module.state = state
    outs = _flat_tensors(result)
    if not outs:
        raise ValueError(f"{type(model).__name__} returned no tensor")
    srcs, shapes, steps_out = rec.sources(outs)
    rec.nodes["output"] = GraphNode("output", N.Output(shapes[0]), None, srcs, shapes, shapes[0], steps_out)
    return Graph(rec.nodes.values(), steps=T, batch=B)
