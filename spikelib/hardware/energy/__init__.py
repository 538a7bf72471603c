"""Energy estimation from measured spike activity.

::

    from spikelib.hardware.energy import measure, estimate_energy, ann_baseline, write_report

    counts = measure(model, batches)                       # exact per-layer counts of an evaluation pass
    neurobench_metrics(counts, model)                      # NeuroBench's metrics under their own names
    snn = estimate_energy(counts, "horowitz45")            # or "loihi", or a model FILE; method="memory"
    ann = ann_baseline(counts, profile="int8")             # the equivalent ANN
    write_report("runs/energy", counts, [snn, ann])        # energy.json / .md / .html + PNG plots

Modules: :mod:`.counters` (per-layer exact counters), :mod:`.counting` (hooks: :class:`EnergyCounter`,
:func:`measure`), :mod:`.layout` (which dimension holds the samples), :mod:`.stats` (count fields),
:mod:`.weighted` (pruned weights, nonzero inputs), :mod:`.membrane` and :mod:`.neurobench` (NeuroBench's metrics),
:mod:`.models` (cited energy data files), :mod:`.accounting` (methods and ANN baseline), :mod:`.report`,
:mod:`.cli` (``spikelib energy`` and the demo stage).
"""

from spikelib.hardware.energy.accounting import EnergyEstimate, ann_baseline, estimate_energy
from spikelib.hardware.energy.counters import UnsupportedLayerError, register_counter
from spikelib.hardware.energy.counting import EnergyCounter, measure
from spikelib.hardware.energy.models import EnergyModel, EnergyModelError, builtin_models, load_energy_model
from spikelib.hardware.energy.neurobench import neurobench_metrics, static_metrics
from spikelib.hardware.energy.report import write_report
from spikelib.hardware.energy.stats import LayerCounts, NetworkCounts

__all__ = ["EnergyCounter", "EnergyEstimate", "EnergyModel", "EnergyModelError", "LayerCounts", "NetworkCounts",
           "UnsupportedLayerError", "ann_baseline", "builtin_models", "estimate_energy", "load_energy_model",
           "measure", "neurobench_metrics", "register_counter", "static_metrics", "write_report"]
