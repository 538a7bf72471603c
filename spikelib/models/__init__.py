"""Reference architectures, time first ``[T, B, ...]``; :func:`load_reference_checkpoint` reads the authors' files."""

from spikelib.models import builtin as _builtin  # registers spiking_mlp, snn_delays, elm_classifier
from spikelib.models.checkpoints import CheckpointMismatchError, load_reference_checkpoint, reference_state_keys
from spikelib.models.e3dsnn import E3DSNN  # registers e3dsnn_tiny, e3dsnn_t, e3dsnn_s, e3dsnn_base
from spikelib.models.e3dsnn_seg import E3DSNNSeg
from spikelib.models.elm_net import ELMClassifier
from spikelib.models.maxformer import MaxFormer
from spikelib.models.maxformer_variants import MaxFormerCIFAR, MaxFormerEvent
from spikelib.models.mlp import SpikingMLP
from spikelib.models.registry import get_model, list_models, register_model
from spikelib.models.sdt_v1 import SpikeDrivenTransformer
from spikelib.models.snn_delays import SNNDelays
from spikelib.models.spikeformer_v2 import MetaSpikeFormer

__all__ = ["CheckpointMismatchError", "ELMClassifier", "E3DSNN", "E3DSNNSeg", "MaxFormer", "MaxFormerCIFAR",
           "MaxFormerEvent",
           "MetaSpikeFormer", "SNNDelays", "SpikeDrivenTransformer", "SpikingMLP", "get_model", "list_models",
           "load_reference_checkpoint", "reference_state_keys", "register_model"]
