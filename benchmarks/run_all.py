"""Run every CPU benchmark in one process and regenerate ``benchmarks/RESULTS.md``.

    python benchmarks/run_all.py              # full sizes (run on a quiet machine; takes several minutes)
    python benchmarks/run_all.py --quick      # smoke test: tiny sizes, results labelled QUICK
    python benchmarks/run_all.py --only lif --only spikelib,snntorch   # one benchmark, some implementations

``--only`` takes benchmark names (``lif``, ``shd_net``) and implementation names or prefixes (``spikelib``,
``norse``, ``spikelib-numba``, ...). Other options (``--quick``, ``--no-probes``, ``--no-malloc-tuning``) are passed
to every benchmark. The process re-executes itself with the glibc malloc settings of README.md unless
``--no-malloc-tuning`` is given.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Sequence, Tuple

import common

if __name__ == "__main__":
    common.ensure_malloc_env()  # before torch is imported: re-executes with the malloc settings if needed

import bench_lif  # noqa: E402
import bench_shd_net  # noqa: E402
import report  # noqa: E402

BENCHMARKS = {"lif": bench_lif, "shd_net": bench_shd_net}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test, not a result)")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="benchmarks (lif, shd_net) and/or implementations (name or prefix); repeat or comma-separate")
    p.add_argument("--no-probes", action="store_true", help="skip the first-call and memory subprocesses")
    p.add_argument("--no-malloc-tuning", action="store_true", help="keep glibc's malloc settings as they are")
    args = p.parse_args(argv)
    args.only = [o for item in args.only for o in item.split(",") if o]
    return args


def split_only(only: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Split ``--only`` names into benchmark names and implementation filters."""
    benches = [o for o in only if o in BENCHMARKS]
    impls = [o for o in only if o not in BENCHMARKS]
    return benches or list(BENCHMARKS), impls


def bench_argv(args: argparse.Namespace, impls: Sequence[str]) -> List[str]:
    """The options handed to each benchmark's ``main``."""
    out = [flag for flag, on in (("--quick", args.quick), ("--no-probes", args.no_probes),
                                 ("--no-malloc-tuning", args.no_malloc_tuning)) if on]
    if impls:
        out += ["--only", ",".join(impls)]
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    benches, impls = split_only(args.only)
    command = common.command_line()
    for name in benches:
        print(f"\n######## {name} ########", flush=True)
        BENCHMARKS[name].main(bench_argv(args, impls), command=command)
    print(f"\nRESULTS.md regenerated: {report.write_results_md()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
