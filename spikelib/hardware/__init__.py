"""Hardware targets: energy estimation (:mod:`spikelib.hardware.energy`), Loihi deployment
(:mod:`spikelib.hardware.loihi`) and NIR interchange (:mod:`spikelib.hardware.nir`)."""
