"""Regenerate every result file and ``RESULTS.md`` from the checked-out commit, one benchmark after the other.

Each benchmark runs as its own process with the command a user would type (the JSON records it, the machine, the
commit and the load average at its start); nothing runs side by side. Refuses to start on a tree with uncommitted
changes to code (anything but Markdown, ``docs/`` and the result files: the figures must belong to one clean code
state) unless ``--allow-dirty`` is given. Each JSON records the commit and the code state
(:func:`common.code_state_id`), so a regeneration may be split over several runs, with result files committed in
between: ``RESULTS.md`` says whether every figure comes from one code state and whether it is HEAD's.

    python benchmarks/regenerate_all.py --refs /scratch/refs                      # the speed benchmarks (about 80 min)
    python benchmarks/regenerate_all.py --refs R --tta-data /scratch/shd_full     # + time to accuracy (about 1 h more)
    python benchmarks/regenerate_all.py --refs R --training   # + the IIR digits seeds (deep: 50 min), Heidelberg

``--only NAME`` (repeatable) runs some of them; ``--list`` prints the commands and exits. A benchmark that fails is
reported and the others still run; the exit code is 1 then.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import common

logger = logging.getLogger("regenerate_all")
HERE = Path(__file__).resolve().parent
#: (name, script and arguments); "{ref}" expands to the reference options.
SPEED: Tuple[Tuple[str, List[str]], ...] = (
    ("lif_shd_net", ["run_all.py"]),
    ("lif_fresh", ["bench_fresh.py"]),
    ("delays", ["bench_delays.py"]),
    ("elm", ["bench_elm.py"]),
    ("sparse", ["bench_sparse.py"]),
    ("transformers", ["bench_transformers.py"]),
    ("energy", ["bench_energy.py"]),
    ("loihi", ["bench_loihi.py"]),
    ("cochlea", ["bench_cochlea.py"]),
    ("delays_ref", ["bench_delays_ref.py", "{ref}"]),
    ("elm_ref", ["bench_elm_ref.py", "{ref}"]),
    ("transformers_ref", ["bench_transformers_ref.py", "{ref}"]),
    ("e3dsnn_ref", ["bench_e3dsnn_ref.py", "{ref}"]),
)
TRAINING: Tuple[Tuple[str, List[str]], ...] = (
    ("iir_digits", ["bench_iir_digits.py", "--seeds", *map(str, range(10))]),
    ("iir_digits_deep", ["bench_iir_digits.py", "--recipe", "configs/iir/digits_deep.yaml", "--seeds",
                         *map(str, range(5))]),
    ("heidelberg_learn", ["learn_heidelberg.py", "--out", "{heidelberg}", "--epochs", "40"]),
)


def dirty_paths() -> List[str]:
    """Uncommitted changes (tracked or not) to the code the figures measure (:func:`common.affects_figures`)."""
    return common.uncommitted_code()


def plan(args: argparse.Namespace) -> List[Tuple[str, List[str]]]:
    ref = ["--refs", str(args.refs), "--git-url", args.git_url]
    steps = list(SPEED)
    if args.tta_data is not None:
        for seed in args.tta_seed or [0]:
            name = "time_to_accuracy" + (f"_seed{seed}" if seed else "")
            steps.append((name, ["bench_time_to_accuracy.py", "--data", str(args.tta_data), "--epochs",
                                 str(args.tta_epochs), "--seed", str(seed), "{ref}"]))
    if args.training:
        steps += list(TRAINING)
    out = []
    for name, cmd in steps:
        if args.only and name not in args.only:
            continue
        argv: List[str] = [str(Path("benchmarks") / cmd[0])]
        for part in cmd[1:]:
            argv += ref if part == "{ref}" else [str(args.heidelberg_data)] if part == "{heidelberg}" else [part]
        out.append((name, argv))
    return out


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--refs", type=Path, default=None, help="scratch folder of the reference checkouts (refcode.py)")
    p.add_argument("--git-url", default="https://github.com/{owner}/{name}.git",
                   help="clone template of the references (refcode.py)")
    p.add_argument("--tta-data", type=Path, default=None, help="full-size synthetic Heidelberg set: also run "
                   "bench_time_to_accuracy.py on it")
    p.add_argument("--tta-epochs", type=int, default=5, help="epochs of each time-to-accuracy run (default 5)")
    p.add_argument("--tta-seed", type=int, action="append", default=[],
                   help="seed of a time-to-accuracy run (repeat for several; default 0)")
    p.add_argument("--training", action="store_true", help="also the IIR digits runs (10 + 5 seeds) and the "
                   "synthetic Heidelberg learnability run (learn_heidelberg.py)")
    p.add_argument("--heidelberg-data", type=Path, default=None,
                   help="data folder of learn_heidelberg.py (generated there once; default <refs>/heidelberg_learn)")
    p.add_argument("--only", action="append", default=[], help="run only these (names as --list shows)")
    p.add_argument("--list", action="store_true", help="print the commands and exit")
    p.add_argument("--allow-dirty", action="store_true", help="run on a tree with uncommitted changes")
    args = p.parse_args(argv)
    if args.refs is None:
        import refcode

        args.refs = refcode.DEFAULT_REFS
    if args.heidelberg_data is None:
        args.heidelberg_data = Path(args.refs) / "heidelberg_learn"
    if args.tta_epochs < 1:
        p.error(f"--tta-epochs: expected at least 1, got {args.tta_epochs}")
    if any(seed < 0 for seed in args.tta_seed):
        p.error(f"--tta-seed: expected non-negative integers, got {args.tta_seed}")
    known = {n for n, _ in SPEED + TRAINING} | {"time_to_accuracy" + (f"_seed{s}" if s else "")
                                                 for s in args.tta_seed or [0]}
    bad = [o for o in args.only if o not in known]
    if bad:
        p.error(f"--only: unknown {', '.join(bad)} (known: {', '.join(sorted(known))})")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    steps = plan(args)
    if args.list:
        for name, cmd in steps:
            print(f"{name}: python {shlex.join(cmd)}")
        return 0
    dirty = dirty_paths()
    if dirty and not args.allow_dirty:
        print(f"error: uncommitted changes ({', '.join(dirty[:5])}{' ...' if len(dirty) > 5 else ''}): commit them "
              f"first so the figures belong to one commit, or pass --allow-dirty", file=sys.stderr)
        return 2
    failed = []
    for name, cmd in steps:
        logger.info("%s: python %s (loadavg %s)", name, shlex.join(cmd), common.loadavg())
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, *cmd], cwd=common.REPO_ROOT).returncode
        logger.info("%s: exit %d after %.0f s", name, rc, time.perf_counter() - t0)
        if rc != 0:
            failed.append(name)
    import report

    logger.info("RESULTS.md regenerated: %s", report.write_results_md())
    if failed:
        logger.error("failed: %s", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
