"""Terminal summaries and the Markdown page ``benchmarks/RESULTS.md``, rebuilt from ``benchmarks/results/*.json``."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from common import RESULTS_DIR, RESULTS_MD, code_state_id, fmt_median, fmt_mib, fmt_ms, fmt_ratio

ORDER = ("lif_cpu", "lif_fresh_cpu", "shd_net_cpu")  # sections in this order; other result files follow alphabetically
SLOW_COLD_CALL_S = 5.0


def print_checks(checks: Mapping[str, Mapping[str, Any]]) -> None:
    """Print how every implementation's spikes and gradients compare with the reference."""
    print("\nsame dynamics? (one forward+backward on the benchmark input, compared with the reference)")
    for name, c in checks.items():
        if "error" in c:
            print(f"  {name:20s} ERROR {c['error']}")
            continue
        extra = f", {c['loss_diff']:.2e} loss diff" if "loss_diff" in c else ""
        if "layer_rates" in c:
            extra += ", layer rates " + " ".join(f"{r:.3f}" for r in c["layer_rates"])
        print(f"  {name:20s} spike rate {c['spike_rate']:.4f}, {c['spike_mismatches']} spikes differ from "
              f"{c['reference']}, max |grad diff| {c['grad_max_abs_diff']:.2e}{extra}")


def print_floor(floor: Mapping[str, Any], rows: Mapping[str, Mapping[str, Any]]) -> None:
    """Print the bandwidth floor of a case and every implementation's ratio to it."""
    ratios = ", ".join(f"{n} {r['ratio_to_floor']:.1f}x" for n, r in rows.items() if r.get("ratio_to_floor"))
    print(f"  bandwidth floor: {floor['tensors']} x [T,B,N] float32 = {floor['bytes'] / 1e6:.1f} MB -> "
          f"{floor['seconds'] * 1e3:.3g} ms; median / floor: {ratios}")


def print_first_calls(payload: Mapping[str, Any]) -> None:
    """Print first-call times and peak memory from the probes (if they ran)."""
    rows_by_case = {case: block["rows"] for case, block in payload["cases"].items()}
    if not any("first_call_cold_s" in r for rows in rows_by_case.values() for r in rows.values()):
        return
    print("\nfirst call in a fresh process (cold: empty spikelib kernel cache; warm: cache filled) and peak memory")
    for case, rows in rows_by_case.items():
        print(f"  {case}:")
        for name, r in rows.items():
            cold = r.get("first_call_cold_s")
            flag = "   <-- slow cold call" if cold is not None and cold > SLOW_COLD_CALL_S else ""
            if r.get("first_call_disturbed"):
                flag += "   (disturbed by other processes)"
            print(f"    {name:20s} cold {_fmt_s(cold):>8s}  warm {_fmt_s(r.get('first_call_warm_s')):>8s}  "
                  f"peak {fmt_mib(r.get('peak_mib')):>6s} MiB{flag}")
            for err in r.get("probe_errors", []):
                print(f"      probe error: {err}")


def _fmt_s(s: Optional[float]) -> str:
    return "n/a" if s is None else f"{s:.2f} s" if s >= 0.1 else f"{s * 1e3:.1f} ms"


def load_results(results_dir: Path = RESULTS_DIR) -> List[Dict[str, Any]]:
    """All result files, in :data:`ORDER` first."""
    files = sorted(results_dir.glob("*.json"), key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    out = []
    for path in files:
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def _machine_line(m: Mapping[str, Any]) -> str:
    v = m.get("versions", {})
    peers = ", ".join(f"{k} {v.get(k) or 'missing'}" for k in ("spikingjelly", "norse", "snntorch"))
    malloc = " ".join(f"{k}={x}" for k, x in (m.get("malloc_env") or {}).items() if x) or "glibc defaults"
    return (f"{m.get('cpu_model')}, {m.get('cpus_usable')} usable CPUs, {m.get('memory_gib')} GiB; "
            f"torch {v.get('torch')} ({m.get('torch_threads')} threads), numba {v.get('numba')}, "
            f"spikelib {v.get('spikelib')} ({m.get('spikelib_git')})"
            + (f", kernels on {m['spikelib_kernel_threads']}" if m.get("spikelib_kernel_threads") else "")
            + f"; {peers}; malloc: {malloc}; "
            f"{m.get('date_utc')}"
            + (f"; load average at start {m['loadavg_start']}" if m.get("loadavg_start") else ""))


def _table(rows: Mapping[str, Mapping[str, Any]], with_floor: bool) -> List[str]:
    head = ["implementation", "median ms", "min ms", "max ms", "kept/dropped", "x fastest peer", "x spikelib-torch"]
    if with_floor:
        head.append("x floor")
    head += ["first call cold", "first call warm", "peak MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        if "median_s" not in r:
            cells = [name, r.get("error", "no kept rounds")] + [""] * (len(head) - 2)
        else:
            cells = [name, fmt_median(r), fmt_ms(r["min_s"]), fmt_ms(r["max_s"]),
                     f"{r['kept']}/{r['dropped']}", fmt_ratio(r.get("ratio_to_fastest_peer")),
                     fmt_ratio(r.get("ratio_to_spikelib_torch"))]
            if with_floor:
                cells.append(fmt_ratio(r.get("ratio_to_floor")))
            star = "*" if r.get("first_call_disturbed") else ""
            cells += [_fmt_s(r.get("first_call_cold_s")) + star, _fmt_s(r.get("first_call_warm_s")) + star,
                      fmt_mib(r.get("peak_mib"))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


_TITLES = {
    "delays_cpu": "Delayed synapses (DCLS) layer, SHD-sized (CPU): spikelib vs DCLS and vs the dense rounded conv",
    "elm_cpu": "ELM layer, SHD-sized (CPU): spikelib's numba and fast backends vs its reference loop",
    "transformers_cpu": "Spiking transformers (CPU): forward and training-step throughput",
    "cochlea_cpu": "Synthetic Heidelberg Digits generation (CPU): eSpeak NG + the 700-channel cochlea model",
    "heidelberg_learn": "Synthetic SHD learnability: SNN vs logistic regression on unheard speakers",
    "iir_digits": "IIR-SNN on scikit-learn's digits: ANN, conversion, retraining at T = 5, 3, 2, 1, from-scratch T = 1",
    "iir_digits_deep": "IIR-SNN on scikit-learn's digits, 8 spiking layers: ANN, conversion, retraining at T = 5, 3, 2, "
                       "1, from-scratch T = 1",
}


def _speedup_lines(rows: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """'spikelib-x is N.NNx faster than y' for cases without peer ratios (e.g. the delay benchmark)."""
    ours = [n for n in rows if n.startswith("spikelib")]
    others = [n for n in rows if not n.startswith("spikelib")]
    if not others:  # spikelib against its own reference path
        others = [n for n in ours if "loop" in n or "reference" in n]
        ours = [n for n in ours if n not in others]
    out = []
    for a in ours:
        for b in others:
            ma, mb = rows[a].get("median_s"), rows[b].get("median_s")
            if ma and mb:
                out.append(f"Speed-up: {a} is {mb / ma:.2f}x faster than {b} (ratio of medians).")
    return out


def render_section(p: Mapping[str, Any]) -> List[str]:
    """The Markdown of one result file."""
    title = p.get("title") or _TITLES.get(p.get("benchmark", ""), p.get("benchmark"))
    lines = [f"## {title}" + (" — QUICK SMOKE RUN (tiny sizes; not a benchmark result)" if p.get("quick") else "")]
    lines.append("")
    if p.get("quick"):
        lines += ["> **Quick run.** These numbers come from `--quick` sizes and repeats, meant only to show the "
                  "scripts work; run the command without `--quick` on a quiet machine for real figures.", ""]
    cfg = p.get("config") or p.get("sizes") or {}
    lines += [f"- Command: `{p.get('command')}`",
              f"- Machine: {_machine_line(p.get('machine', {}))}",
              *(["- Config: " + ", ".join(f"{k}={v}" for k, v in cfg.items())] if cfg else [])]
    if p.get("only"):
        lines.append(f"- Partial run: only {', '.join(p['only'])}")
    if p.get("bandwidth"):
        bw = p["bandwidth"]
        lines.append(f"- Copy bandwidth: {bw['bytes_per_s'] / 1e9:.1f} GB/s (best of copies of {bw['megabytes']} MB)")
    if p.get("spikelib_auto_backend"):
        lines.append(f"- spikelib `backend='auto'` runs `{p['spikelib_auto_backend']}` on CPU")
    for name, reason in (p.get("skipped") or {}).items():
        lines.append(f"- Skipped {name}: {reason}")
    lines.append("")
    for case, block in p.get("cases", {}).items():
        lines += [f"### {case}: {block.get('title', '')}", ""]
        floor = block.get("floor")
        lines += _table(block["rows"], floor is not None)
        lines.append("")
        fastest = next((r.get("fastest_peer") for r in block["rows"].values() if r.get("fastest_peer")), None)
        if fastest:
            lines += [f"Fastest peer in this run: {fastest}.", ""]
        else:
            lines += _speedup_lines(block["rows"]) + [""]
        for name, r in block["rows"].items():
            if r.get("images_per_s"):
                lines += [f"Throughput: {name} {r['images_per_s']:.1f} images/s (median)"
                          + (f"; model {block['model']}" if block.get("model") else "") + ".", ""]
        if block.get("checks"):
            lines += ["Checks: " + ", ".join(f"{k}={v}" for k, v in block["checks"].items()), ""]
        if floor:
            lines += [f"Bandwidth floor: {floor['tensors']} x [T,B,N] float32 = {floor['bytes'] / 1e6:.1f} MB moved "
                      f"at the measured copy bandwidth = {fmt_ms(floor['seconds'])} ms.", ""]
        dropped = sum(r.get("dropped", 0) for r in block["rows"].values())
        lines += [f"Rounds dropped for interference: {dropped}.", ""]
        if any(r.get("disturbed") or r.get("first_call_disturbed") for r in block["rows"].values()):
            lines += ["\\* disturbed by other processes in every attempt (all rounds, or all first-call probes): "
                      "not a valid figure.", ""]
    checks = p.get("checks") or {}
    if checks and not all(isinstance(c, Mapping) and "spike_rate" in c for c in checks.values()):
        lines += _reference_checks(checks)  # the authors' code on the same weights and input (bench_*_ref.py)
        checks = {}
    if checks:
        lines += ["Same dynamics (spikes and input/weight gradients against the reference on the benchmark input):", ""]
        for name, c in checks.items():
            if "error" in c:
                lines.append(f"- {name}: error {c['error']}")
            else:
                lines.append(f"- {name}: spike rate {c['spike_rate']:.4f}, {c['spike_mismatches']} spikes differ, "
                             f"max abs gradient difference {c['grad_max_abs_diff']:.2e}")
        lines.append("")
    impls = p.get("implementations") or {}
    if impls:
        lines += ["Configurations:", ""] + [f"- **{n}**: {c}" for n, c in impls.items()] + [""]
    summary = _summary_for(p.get("benchmark", ""))
    if summary is not None:
        lines += summary(p) + [""]
    return lines


def _reference_checks(checks: Mapping[str, Any]) -> List[str]:
    """``checks`` of a comparison with the authors' code: ``{quantity: value}`` or ``{model: {quantity: value}}``."""
    def flat(c: Mapping[str, Any]) -> str:
        return ", ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}" for k, v in c.items())

    if all(isinstance(c, Mapping) for c in checks.values()):
        return ["Equality with the reference on the same weights and input:", ""] + [
            f"- {name}: {flat(c)}" for name, c in checks.items()] + [""]
    return [f"Equality with the reference on the same weights and input: {flat(checks)}.", ""]


def _energy_summary(p: Mapping[str, Any]) -> List[str]:
    pct = (lambda v: "n/a" if v is None else f"{100 * v:+.1f}%")
    out = [f"Counting overhead (target {p.get('target', '')}). Headline: **alternating**, the median over rounds of "
           "counted/plain - 1 with a hook-free copy and the counted model run on each batch back to back (A/A: the "
           "same with neither counted, the method's noise floor). Whole passes, one counter: median over median "
           "(`pass`) and min over min (`min`); `per batch`: a new counter around every batch:", ""]
    groups: Dict[str, List[str]] = {}
    for case, block in p.get("cases", {}).items():
        rows = block.get("rows", {})
        if isinstance(block.get("overhead"), Mapping):  # one pass counted by each harness (bench_energy --only)
            each = ", ".join(f"{name} **{pct(v)}**" for name, v in block["overhead"].items())
            groups.setdefault("harnesses", []).append(
                f"  - {case}: {block.get('network', '')} (input {block.get('input_shape')}, {block.get('batches')} "
                f"batches per pass), overhead over the plain pass: {each}")
            continue
        lo_p, lo_c = rows.get("plain", {}).get("min_s"), rows.get("counted", {}).get("min_s")
        mins = (lo_c / lo_p - 1.0) if lo_p and lo_c else None
        alt, ctl = block.get("alternating") or {}, block.get("alternating_control") or {}
        head = (f"alternating **{pct(alt.get('overhead'))}** (A/A {pct(ctl.get('overhead'))}, "
                f"{1e3 * alt.get('plain_s_per_batch', 0):.1f} ms per plain batch); " if alt else "")
        groups.setdefault(block.get("group", "cases"), []).append(
            f"  - {case} (input {block.get('input_shape')}, {block.get('batches')} batches per pass): {head}pass "
            f"{'**' if not alt else ''}{pct(block.get('overhead'))}{'**' if not alt else ''}, min {pct(mins)}, "
            f"per batch {pct(block.get('overhead_per_batch'))}")
    for group, lines in groups.items():
        out += [f"- {group}:"] + lines
    return out


def _cochlea_summary(p: Mapping[str, Any]) -> List[str]:
    st, g, full = p.get("per_clip_s", {}), p.get("generate", {}), p.get("full_size_estimate", {})
    stages = ", ".join(f"{k} {1e3 * v:.0f} ms" for k, v in st.items())
    return [f"- Cochlea per {p.get('clip_seconds', 0):.2f} s clip, 700 channels: {stages}",
            f"- Transfer function (once per clip length): {p.get('transfer_s', 0):.1f} s; eSpeak "
            f"{1e3 * p.get('tts_s_per_word', 0):.1f} ms per word",
            f"- generate_heidelberg end to end: {g.get('samples')} samples in {g.get('seconds', 0):.1f} s = "
            f"**{g.get('samples_per_s', 0):.2f} samples/s** (target >= 5), {g.get('cpu_s_per_sample', 0):.2f} CPU-s "
            f"per sample; second run (cached) {g.get('second_run_s', 0):.2f} s",
            f"- Full-size estimate: {full.get('samples')} samples in about {full.get('minutes', 0):.0f} min"]


def _heidelberg_summary(p: Mapping[str, Any]) -> List[str]:
    d, snn = p.get("data", {}), p.get("snn", {})
    lr = ", ".join(f"C={c}: {a:.3f}" for c, a in p.get("logistic_regression_pooled_counts", {}).items())
    return [f"- Data: {d.get('train_samples')} train / {d.get('test_samples')} test samples, unheard test speakers "
            f"{d.get('test_speakers')}; chance {p.get('chance')}",
            f"- Logistic regression on time-pooled counts (test accuracy per regularisation): {lr}",
            f"- SpikingMLP: test accuracy {snn.get('last', 0):.3f} at the last epoch, mean of the last 3 epochs "
            f"{snn.get('last3_mean', 0):.3f} (train {snn.get('train_acc_last_epoch', 0):.3f}; "
            f"{snn.get('train_seconds', 0):.0f} s of training)"]


def _fresh_summary(p: Mapping[str, Any]) -> List[str]:
    removed = ", ".join(p.get("environment_removed") or []) or "none were set"
    out = [f"Environment variables removed for the fresh processes: {removed}.", "",
           "| process | case | spikelib ms | spikingjelly ms | ratio | spikelib faults/call | kept/dropped | load |",
           "|---|---|---|---|---|---|---|---|"]
    for i, rec in enumerate(p.get("processes", []), 1):
        if "error" in rec:
            out.append(f"| {i} | error: {rec['error']} |  |  |  |  |  |  |")
            continue
        for case, block in rec.get("cases", {}).items():
            rows = block.get("rows", {})
            sl, sj = rows.get("spikelib", {}), rows.get("spikingjelly", {})
            out.append(f"| {i} | {case} | {fmt_median(sl)} | {fmt_median(sj)} | {fmt_ratio(block.get('ratio'))} | "
                       f"{sl.get('minor_faults_per_call_median')} | {sl.get('kept')}/{sl.get('dropped')}, "
                       f"{sj.get('kept')}/{sj.get('dropped')} | {rec.get('loadavg_start', '')} |")
    out.append("")
    for case, s in (p.get("summary") or {}).items():
        out.append(f"- {case}: spikingjelly / spikelib **min {fmt_ratio(s.get('min_ratio'))}**, median "
                   f"{fmt_ratio(s.get('median_ratio'))}, max {fmt_ratio(s.get('max_ratio'))} over "
                   f"{s.get('processes')} processes ({s.get('disturbed_processes')} with every round disturbed); "
                   f"target >= {(p.get('config') or {}).get('target_ratio')}x in every process: "
                   f"{'met' if s.get('target_met') else 'not met'}")
    return out


def _loihi_summary(p: Mapping[str, Any]) -> List[str]:
    r = p.get("results", {})
    lava = r.get("lava", {})
    out = [f"- Bit-exact with Lava on spikes and u/v of both layers: {r.get('bit_exact_spikes_u_v')}",
           f"- Lava (Loihi2SimCfg fixed_pt): median {lava.get('median_s', 0):.2f} s per 100-step run "
           f"(first run with monitors {lava.get('first_run_with_monitors_s', 0):.2f} s)"]
    batch = (r.get("config") or {}).get("batch", 1)
    for name, row in (r.get("spikelib") or {}).items():
        if row.get("median_s"):
            n = batch if "batch" in name else 1
            per = f" ({n} samples at once; per sample {1e3 * row['median_s'] / n:.1f} ms)" if n > 1 else ""
            out.append(f"- {name}: median {1e3 * row['median_s']:.1f} ms{per}, "
                       f"{lava.get('median_s', 0) * n / row['median_s']:.0f}x faster than Lava per sample "
                       f"(target >= 50x)")
    return out


def _iir_summary(p: Mapping[str, Any]) -> List[str]:
    r = p.get("result", {})
    conv = (r.get("conversion") or {}).get("test_acc_by_T", {})

    def row(name: str, block: Mapping[str, Any], converted: str = "-") -> str:
        return (f"| {name} | {block.get('timesteps', '-')} | {100 * block.get('test_acc', 0):.2f}% | {converted} | "
                f"{block.get('sops_per_inference', 0):.0f} | {block.get('macs_per_inference', 0):.3g} | "
                f"{block.get('energy_uj_per_inference', 0):.3g} |")

    first = (r.get("iir") or [{}])[0]
    t = max(1, int(first.get("timesteps", 1)))  # an SNN stage's dense equivalent runs the ANN's layers T times
    ann_macs = first["ann_macs_per_inference"] / t if "ann_macs_per_inference" in first else None
    ann_energy = first["ann_energy_uj_per_inference"] / t if "ann_energy_uj_per_inference" in first else None
    _num = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    out = [p.get("what", ""), ""]
    if p.get("provenance"):
        out += [f"Provenance: {p['provenance']}.", ""]
    out += ["| network | T | test acc. | converted, no retraining | SOPs / inf. | MACs / inf. | energy / inf. (uJ) |",
           "|---|---|---|---|---|---|---|",
           f"| ANN ({(r.get('ann') or {}).get('model', '')}) | - | {100 * (r.get('ann') or {}).get('test_acc', 0):.2f}% "
           f"| - | 0 | {_num(ann_macs)} | {_num(ann_energy)} |"]
    for block in r.get("iir", []):
        acc = conv.get(str(block.get("timesteps")))
        out.append(row("IIR SNN", block, "-" if acc is None else f"{100 * acc:.2f}%"))
    if r.get("scratch"):
        out.append(row(f"SNN from scratch ({r['scratch'].get('epochs')} epochs)", r["scratch"]))
    per_seed = p.get("per_seed") or []
    if len(per_seed) > 1:
        keys = [k for k in per_seed[0] if k != "seed"]
        out += ["", f"Test accuracy (%) for each seed (the table above is seed {p.get('seed')}):", "",
                "| seed | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        out += [f"| {s['seed']} | " + " | ".join(f"{100 * s[k]:.2f}" for k in keys) + " |" for s in per_seed]
        spread = p.get("spread") or {}
        out.append("| mean +- sd | " + " | ".join(
            f"{100 * spread[k]['mean']:.2f} +- {100 * spread[k]['stdev']:.2f}" for k in keys if k in spread) + " |")
    return out


def _tta_summary(p: Mapping[str, Any]) -> List[str]:
    """Per-epoch test accuracy and times of spikelib and the reference (bench_time_to_accuracy.py)."""
    runs, d = p.get("runs", {}), p.get("data", {})
    ours, ref = runs.get("spikelib", {}), runs.get("reference", {})
    out = [f"- Data: {d.get('n_train')} training / {d.get('n_test')} test samples ({d.get('folder')})"]
    for name, r in (("spikelib", ours), ("reference", ref)):
        if "error" in r:
            out.append(f"- {name}: error {r['error']}")
    if "epochs" not in ours or "epochs" not in ref:
        return out
    reported = all("test_acc_reported" in e for e in ref["epochs"])
    out += ["", "| epoch | spikelib test acc | reference test acc |"
            + (" reference as it reports it |" if reported else "")
            + " spikelib train s | reference train s | spikelib eval s | reference eval s |",
            "|---|---|---|" + ("---|" if reported else "") + "---|---|---|---|"]
    for a, b in zip(ours["epochs"], ref["epochs"]):
        out.append(f"| {a['epoch']} | {100 * a['test_acc']:.2f}% | {100 * b['test_acc']:.2f}% | "
                   + (f"{100 * b['test_acc_reported']:.2f}% | " if reported else "")
                   + f"{a['train_s']:.1f} | {b['train_s']:.1f} | {a['eval_s']:.1f} | {b['eval_s']:.1f} |")
    if reported:
        out += ["", "Test accuracy per sample on both sides; `as it reports it`: the mean of the reference's "
                "per-batch accuracies (its `eval_model`), which weighs its smaller last test batch 2.5x."]
    out += ["", f"- Wall time, everything (data, model, all epochs, evaluations): spikelib {ours['total_s']:.0f} s, "
            f"reference {ref['total_s']:.0f} s: **{p.get('speedup_total', 0):.2f}x** (target 3x)"]
    if p.get("speedup_train_epochs_2_on"):
        out.append(f"- Training time of epochs 2 on (set-up excluded): {p['speedup_train_epochs_2_on']:.2f}x")
    out.append(f"- Load average after each run: spikelib {ours.get('loadavg_after')}, reference "
               f"{ref.get('loadavg_after')}")
    return out


def tta_across_seeds(payloads: Sequence[Mapping[str, Any]]) -> List[str]:
    """Per epoch, the mean and sample standard deviation of each implementation's test accuracy over the
    time-to-accuracy runs at several seeds (own initial weights, same epochs, per-sample reference accuracy), and
    the difference of the means with its standard error: the noise the two curves are compared against. Empty if
    fewer than two such runs."""
    runs = [p for p in payloads if str(p.get("benchmark", "")).startswith("time_to_accuracy")
            and (p.get("config") or {}).get("spikelib_init") == "own" and not p.get("quick")
            and all("epochs" in (p.get("runs") or {}).get(k, {}) for k in ("spikelib", "reference"))
            and all("test_acc_reported" in e for e in p["runs"]["reference"]["epochs"])]
    epochs = {len(p["runs"][k]["epochs"]) for p in runs for k in ("spikelib", "reference")}
    if len(runs) < 2 or len(epochs) != 1:
        return []
    seeds = sorted((p.get("config") or {}).get("seed") for p in runs)
    commits = sorted({str((p.get("machine") or {}).get("spikelib_git", "?")) for p in runs})
    out = ["## Time to accuracy across seeds (CPU): SNN-delays SHD recipe, spikelib vs the authors' training loop", "",
           f"- From the time-to-accuracy sections above at seeds {', '.join(map(str, seeds))} "
           f"(spikelib {', '.join(commits)}); "
           "test accuracy per sample; mean +- sample standard deviation over the seeds; difference of the means "
           "+- its standard error (sqrt(sd_a^2/n + sd_b^2/n))", "",
           "| epoch | spikelib | reference | spikelib - reference |", "|---|---|---|---|"]
    for e in range(epochs.pop()):
        a = [100 * p["runs"]["spikelib"]["epochs"][e]["test_acc"] for p in runs]
        b = [100 * p["runs"]["reference"]["epochs"][e]["test_acc"] for p in runs]
        sa, sb = statistics.stdev(a), statistics.stdev(b)
        se = math.sqrt(sa ** 2 / len(a) + sb ** 2 / len(b))
        out.append(f"| {e + 1} | {statistics.mean(a):.2f} +- {sa:.2f} | {statistics.mean(b):.2f} +- {sb:.2f} | "
                   f"{statistics.mean(a) - statistics.mean(b):+.2f} +- {se:.2f} |")
    return out + [""]


_SUMMARIES = {"iir_digits": _iir_summary, "iir_digits_deep": _iir_summary, "lif_fresh_cpu": _fresh_summary,
              "energy_cpu": _energy_summary, "cochlea_cpu": _cochlea_summary,
              "heidelberg_learn": _heidelberg_summary, "loihi_cpu": _loihi_summary,
              "time_to_accuracy_cpu": _tta_summary, "time_to_accuracy_reference_init_cpu": _tta_summary}


def _summary_for(name: str) -> Optional[Any]:
    """The summary writer of a benchmark (time-to-accuracy runs at any seed share one)."""
    if name.startswith("time_to_accuracy"):
        return _tta_summary
    return _SUMMARIES.get(name)


def code_state_lines(payloads: Sequence[Mapping[str, Any]], head_state: Optional[str]) -> List[str]:
    """Which code the figures measured: the code states (:func:`common.code_state_id`) and commits the result files
    record, whether they are one state, and whether it is ``head_state`` (the checkout's). A result made with
    uncommitted code changes, or without a recorded state, is named: its figures belong to no commit."""
    by_state: Dict[str, List[Mapping[str, Any]]] = {}
    for p in payloads:
        m = p.get("machine") or {}
        commit = str(m.get("spikelib_git") or "")
        if commit.endswith("+dirty"):
            state = "uncommitted changes"
        else:  # results made before the state was recorded: the state of their commit, where this clone has it
            state = m.get("spikelib_code") or (commit and code_state_id(commit)) or "not recorded"
        by_state.setdefault(state, []).append(p)
    commits = sorted({str((p.get("machine") or {}).get("spikelib_git", "?")) for p in payloads})
    if len(by_state) == 1 and next(iter(by_state)) not in ("uncommitted changes", "not recorded"):
        state = next(iter(by_state))
        where = ("the code of this checkout" if state == head_state else
                 f"not this checkout's code ({head_state})")
        return [f"**Code state:** every figure below was measured on one code state, `{state}` (commit"
                f"{'s' if len(commits) > 1 else ''} {', '.join(commits)}; commits that differ only in documentation "
                f"or result files share a state): {where}.", ""]
    out = [f"**Code state:** the figures below do not all come from one committed code state (this checkout's is "
           f"`{head_state}`):", ""]
    for state, group in sorted(by_state.items()):
        names = ", ".join(str(p.get("benchmark", "?")) for p in group)
        group_commits = sorted({str((p.get("machine") or {}).get("spikelib_git", "?")) for p in group})
        out.append(f"- `{state}` (commit{'s' if len(group_commits) > 1 else ''} {', '.join(group_commits)}): {names}")
    return out + [""]


def write_results_md(results_dir: Path = RESULTS_DIR, path: Path = RESULTS_MD) -> Path:
    """Regenerate RESULTS.md from every result file."""
    lines = ["# spikelib benchmark results", "",
             "Generated by the scripts in `benchmarks/` (see README.md there for the method); each section names "
             "the command and the machine that produced it. Times are medians of the kept rounds; ratios divide "
             "medians. `x fastest peer` compares with the fastest of spikingjelly, norse and snnTorch in the same "
             "run. The machine line names the commit; `+dirty` marks a run made with uncommitted changes in the "
             "tree (the commit that adds the result files says which).", ""]
    payloads = load_results(results_dir)
    lines += code_state_lines(payloads, code_state_id())
    for payload in payloads:
        lines += render_section(payload)
    lines += tta_across_seeds(payloads)
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
