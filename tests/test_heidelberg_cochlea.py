"""The cochlea model against lauscher 1.0.1 (the SHD pipeline, LGPL-2.1, test-time reference only), stage by stage.

lauscher is slow (per-sample Python loops), so the comparison uses a few short eSpeak words with 32 channels
(``BasilarMembrane(channels=K)`` spaces K channels over the same membrane as 700 do); its results are computed once
per module. Installed by ``scripts/install_speech.sh``.
"""

from __future__ import annotations

import numpy as np
import pytest

from spikelib.data.heidelberg import cochlea as C
from spikelib.data.heidelberg import tts

lauscher_t = pytest.importorskip("lauscher.transformations")
lauscher_audio = pytest.importorskip("lauscher.audiowaves")

K = 32
FS = tts.SAMPLE_RATE


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    """Three words (two speakers, both languages) padded with 50 ms of silence and faint noise."""
    speakers = tts.make_speakers(2, seed=3)
    picks = ((0, "en", 7), (1, "de", 3), (0, "en", 2))
    reqs = [tts.utterance_request(speakers[i], lang, d, np.random.default_rng(i)) for i, lang, d in picks]
    pcms = tts.synthesize(reqs, tmp_path_factory.mktemp("tts"))
    clips = []
    for i, pcm in enumerate(pcms):
        word = tts.trim_silence(pcm).astype(np.float64) / 32768.0
        clip = np.concatenate([np.zeros(1100), word, np.zeros(1101 + i)])  # odd and even lengths
        clips.append(clip + np.random.default_rng(i).normal(0.0, 1e-3, clip.size))
    return clips


@pytest.fixture(scope="module")
def reference(words):
    """lauscher's stages on every word: pre-processed audio, membrane velocity, hair cell output, spike counts."""
    np.random.seed(1234)  # lauscher's fibres use the global numpy generator
    out = []
    for clip in words:
        wave = lauscher_audio.MonoAudioWave(clip.copy(), FS)
        pre = wave.transform(lauscher_t.RmsNormalizer(0.3)).transform(lauscher_t.HanningWindow())
        pre_samples = pre.samples.copy()
        bm = pre.transform(lauscher_t.BasilarMembrane(channels=K))
        hc = bm.transform(lauscher_t.HairCell())
        spikes = hc.transform(lauscher_t.BushyCell())
        out.append({"pre": pre_samples, "bm": np.array(bm.channels), "bm_rate": bm.sample_rate,
                    "hc": np.array(hc.channels), "labels": np.asarray(spikes.spike_labels, dtype=int),
                    "times": np.asarray(spikes.spike_times)})
    return out


def test_preprocessing_matches_reference(words, reference):
    for clip, ref in zip(words, reference):
        np.testing.assert_array_equal(C.preprocess(clip), ref["pre"])


def test_basilar_membrane_matches_reference_to_float_tolerance(words, reference):
    for clip, ref in zip(words, reference):
        velocity, rate = C.basilar_membrane(C.preprocess(clip), FS, K)
        assert rate == ref["bm_rate"] == FS // 2
        assert velocity.shape == ref["bm"].T.shape
        scale = np.abs(ref["bm"]).max()
        err = np.abs(velocity - ref["bm"].T).max() / scale
        assert err < 1e-12, err
        # and the membrane is tonotopic: low channels (base) respond to high frequencies
        assert np.argmax(np.abs(ref["bm"]).max(axis=1)) > 0


def test_hair_cell_is_bit_identical_on_reference_input(reference):
    for ref in reference:
        ours = C.hair_cell(ref["bm"].T, ref["bm_rate"])
        np.testing.assert_array_equal(ours, ref["hc"].T)


def test_bushy_lif_is_bit_identical_on_reference_fibres(reference):
    ref = reference[0]
    cell = lauscher_t.BushyCell()
    np.random.seed(7)
    channels = range(0, K, 4)
    fibres = [cell._sample(ref["hc"][k], ref["bm_rate"]) for k in channels]  # [T, 40] refractory fibres
    expected = np.stack([cell._lif(f.astype(np.float64), ref["bm_rate"]) for f in fibres], axis=1)
    counts = np.stack([f.sum(axis=1) for f in fibres], axis=1)
    ours = C.bushy_lif(counts, ref["bm_rate"])
    assert expected.sum() > 20
    np.testing.assert_array_equal(ours, expected.astype(np.uint8))


def test_fibre_counts_follow_the_reference_distribution(reference):
    """40 refractory Bernoulli fibres vs our binomial draw over available fibres: same mean count per channel."""
    ref = reference[1]
    cell = lauscher_t.BushyCell()
    np.random.seed(11)
    reps = 12
    ref_counts = np.zeros(K)
    our_counts = np.zeros(K)
    ref_sq = np.zeros(K)
    for r in range(reps):
        theirs = np.array([cell._sample(ref["hc"][k], ref["bm_rate"]).sum() for k in range(K)], dtype=float)
        ref_counts += theirs
        ref_sq += theirs ** 2
        our_counts += C.fibre_counts(ref["hc"].T, ref["bm_rate"], seed=r).sum(axis=0)
    var = ref_sq / reps - (ref_counts / reps) ** 2
    z = (our_counts - ref_counts) / reps / np.sqrt(2 * np.maximum(var, 1.0) / reps)
    assert np.abs(z).max() < 4.5, z
    assert abs(our_counts.sum() / ref_counts.sum() - 1) < 0.01


def test_spike_counts_per_channel_correlate_with_reference(words, reference):
    ours = np.zeros(K)
    theirs = np.zeros(K)
    cochlea = C.Cochlea(K)
    for i, (clip, ref) in enumerate(zip(words, reference)):
        times, units = cochlea(clip, FS, seed=i)
        ours += np.bincount(units, minlength=K)
        theirs += np.bincount(ref["labels"], minlength=K)
        assert np.all(np.diff(times) >= 0)
        assert times.max() < clip.size / FS
    corr = np.corrcoef(ours, theirs)[0, 1]
    assert corr >= 0.95, corr
    assert abs(ours.sum() / theirs.sum() - 1) < 0.15


def test_cochlea_is_deterministic_and_independent_of_threads(words):
    import numba

    cochlea = C.Cochlea(K)
    first = cochlea(words[0], FS, seed=5)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = cochlea(words[0], FS, seed=5)
    finally:
        numba.set_num_threads(old)
    other = cochlea(words[0], FS, seed=6)
    for a, b in zip(first, single):
        np.testing.assert_array_equal(a, b)
    assert not (first[0].size == other[0].size and np.array_equal(first[0], other[0]))


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="silent"):
        C.preprocess(np.zeros(100))
    with pytest.raises(ValueError, match="1-D"):
        C.preprocess(np.ones((2, 50)))
    with pytest.raises(ValueError, match="channels"):
        C.Cochlea(1)
    with pytest.raises(ValueError, match="sample_rate"):
        C.Cochlea(8)(np.ones(100), 100, seed=0)
    with pytest.raises(ValueError, match="tau_mem"):
        C.CochleaParams(tau_mem=-1.0)
