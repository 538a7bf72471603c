"""``spikelib backends``: list the registered LIF backends and what ``backend="auto"`` picks on CPU per dtype."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _backends(args: argparse.Namespace) -> int:
    import torch

    from spikelib.functional.lif import LIFRequest, resolve_lif_config
    from spikelib.kernels import BackendUnavailableError, available_backends, select_backend

    config = resolve_lif_config("hard", True, False, 0.0, args.surrogate)
    cpu = torch.device("cpu")
    print("LIF backends, highest priority first (status for a CPU float32 request with gradients):")
    for name in available_backends("lif"):
        request = LIFRequest(cpu, torch.float32, config, True)
        try:
            entry = select_backend("lif", name, request, count=False)
            status, description = "available", entry.description
        except BackendUnavailableError as exc:
            status, description = f"unavailable: {exc}", ""
        print(f"  {name:<8} {description:<50} [{status}]")
    print(f"backend='auto' on CPU (surrogate {args.surrogate!r}):")
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        try:
            pick = select_backend("lif", "auto", LIFRequest(cpu, dtype, config, True), count=False).name
        except BackendUnavailableError as exc:
            pick = f"none ({exc})"
        print(f"  {str(dtype).replace('torch.', ''):<9} -> {pick}")
    return 0


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``spikelib backends``."""
    parser = subparsers.add_parser("backends", help="list the LIF backends and what 'auto' picks on CPU",
                                   description="List the registered LIF backends and what backend='auto' picks.")
    parser.add_argument("--surrogate", default="atan", help="surrogate of the request (default atan)")
    parser.set_defaults(func=_backends)
