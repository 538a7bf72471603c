"""``python -m spikelib ...`` (and ``torchrun -m spikelib train ...``) runs the ``spikelib`` command."""

import sys

from spikelib.cli import main

if __name__ == "__main__":
    sys.exit(main())
