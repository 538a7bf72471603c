#!/usr/bin/env bash
# Speech-derived synthetic SHD (spikelib.data.heidelberg): text-to-speech and its test-time references.
#   bash scripts/install_speech.sh <python>
# - espeakng-loader ships libespeak-ng 1.52 and its voice data (GPL-3.0-or-later). spikelib never loads it in its own
#   process: spikelib.data.heidelberg._tts_worker runs it in a separate process that writes audio.
# - scipy: Bessel/Hankel functions for the basilar-membrane transfer function (spikelib.data.heidelberg.cochlea).
# - lauscher 1.0.1 (LGPL-2.1, the cochlea model SHD was made with) and tonic 1.7.0 (GPL-3, its SHD loader) are
#   test-time references only, installed with --no-deps plus the few modules they really import: their declared
#   requirements (librosa, torchvision/torchaudio via extras) would pull far more, and pip must never resolve torch.
set -euo pipefail
PY="${1:?usage: install_speech.sh <python>}"
PIP=("$PY" -m pip install -q --no-deps)
"${PIP[@]}" espeakng-loader==0.2.4 scipy==1.17.1
# lauscher imports soundfile (-> cffi, pycparser), scipy, numba, matplotlib.
"${PIP[@]}" lauscher==1.0.1 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12
# tonic's package import pulls importRosbag (DAVIS sets) and requests (NTIDIGITS18); typing_extensions is used too.
"${PIP[@]}" tonic==1.7.0 importRosbag==1.0.4 requests==2.34.2 urllib3==2.8.0 idna==3.20 certifi==2026.10.18 \
    charset-normalizer==3.5.2 typing_extensions==4.16.0
"$PY" - <<'PYEOF'
import espeakng_loader, lauscher.transformations, lauscher.audiowaves, scipy.special  # noqa: F401
from tonic.datasets import SHD  # noqa: F401
PYEOF
