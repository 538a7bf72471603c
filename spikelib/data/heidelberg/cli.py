"""``spikelib data synth-heidelberg``: spoken digits -> cochlea model -> SHD-format files (see generate.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    from spikelib.data.heidelberg.generate import generate_heidelberg
    from spikelib.data.heidelberg.tts import EspeakNotFoundError

    languages = tuple(x.strip() for x in args.languages.split(",") if x.strip())
    variants = tuple(x.strip() for x in args.variants.split(",") if x.strip()) if args.variants else None
    try:
        summary = generate_heidelberg(args.out, speakers=args.speakers, repeats=args.repeats, seed=args.seed,
                                      test_speakers=args.test_speakers, languages=languages,
                                      channels=args.channels, cache_dir=args.cache, plot=args.plot,
                                      progress=not args.no_progress, overwrite=args.force, variants=variants,
                                      workers=args.workers)
    except (ValueError, TypeError, PermissionError, FileExistsError, EspeakNotFoundError) as err:
        print(f"error: spikelib data synth-heidelberg: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


def register(subparsers: "argparse._SubParsersAction") -> None:
    """Add the ``synth-heidelberg`` parser to the ``spikelib data`` sub-parsers."""
    from spikelib.cli_common import non_negative_int, positive_int

    p = subparsers.add_parser(
        "synth-heidelberg", help="speech-derived synthetic SHD: eSpeak NG digits through a cochlea model",
        description="Synthesise 'zero'..'nine' and 'null'..'neun' with eSpeak NG (separate process) for N synthetic "
                    "speakers, R repetitions each, pass them through the SHD cochlea model (basilar membrane, "
                    "Meddis hair cells, bushy cells; 700 channels) and write DIR/shd_train.h5 and DIR/shd_test.h5 in "
                    "the SHD layout, split by speaker. Audio and spikes are cached: a second run is instant. "
                    "Needs `bash scripts/install_speech.sh <python>`. SHD size (8,000 train / 2,400 test samples): "
                    "--speakers 52 --test-speakers 12 --repeats 10 (about 0.3 CPU-seconds per sample).")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--speakers", type=positive_int, default=12, help="synthetic speakers, >= 2 (default 12)")
    p.add_argument("--repeats", type=positive_int, default=4, help="repetitions per word and speaker (default 4)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed (default 0)")
    p.add_argument("--test-speakers", type=positive_int, default=None,
                   help="speakers held out for shd_test.h5 (default a quarter, at least 1)")
    p.add_argument("--languages", default="en,de", help="comma-separated subset of en,de (default en,de)")
    p.add_argument("--variants", default=None,
                   help="comma-separated eSpeak NG voice variants speakers are drawn from (e.g. m1,m3,f2; default: "
                        "44 human-sounding variants)")
    p.add_argument("--channels", type=positive_int, default=700, help="cochlea channels (default 700, as SHD)")
    p.add_argument("--cache", type=Path, default=None, help="audio/spike cache folder (default DIR/.cache)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="cochlea processes (default: the number of CPUs); the output does not depend on it")
    p.add_argument("--plot", action="store_true", help="also write DIR/shd_raster.png (one sample per class)")
    p.add_argument("--force", action="store_true", help="replace shd_*.h5 files that this command did not write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
