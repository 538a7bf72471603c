"""Energy reports: JSON for machines, Markdown and HTML for people, PNG plots (matplotlib, optional).

:func:`write_report` writes into a folder, each file atomically (temporary file, fsync, ``os.replace``)::

    energy.json            counts per layer, every estimate with its per-layer terms, NeuroBench's metrics, the
                           models with citations
    energy.md, energy.html per-sample tables: estimates vs the ANN baselines, per layer (ops, input spike rate,
                           firing rate, energy share), NeuroBench's metrics; warnings (neuron layers that never fired)
    energy_per_layer.png   energy per sample and layer of the main estimate
    firing_rates.png       input spike rate of each synaptic layer and firing rate of each neuron layer, apart
    spike_raster.png       spikes of one sample (the first of the first batch) in every neuron layer

Every figure shown is per sample (totals over the pass are in ``energy.json``).

The plots need matplotlib (``pip install spikelib[report]``); ``plots=False`` skips them.
"""

from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from spikelib.hardware.energy.accounting import EnergyEstimate
from spikelib.hardware.energy.models import EnergyModel
from spikelib.hardware.energy.neurobench import neurobench_metrics
from spikelib.hardware.energy.stats import NetworkCounts
from spikelib._atomic import atomic_write_bytes, atomic_write_text

__all__ = ["build_report", "write_report", "markdown_report", "html_report", "format_energy", "report_warnings"]


def format_energy(pj: Optional[float]) -> str:
    """``1234.5`` -> ``"1.23 nJ"`` (pJ input)."""
    if pj is None or not math.isfinite(pj):
        return "-"
    for unit, scale in (("J", 1e12), ("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _rate(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


def report_warnings(counts: NetworkCounts) -> List[str]:
    """What a reader of the estimate must know: neuron layers that never fired, a pass without any spike."""
    out = []
    silent = counts.silent_layers()
    if silent:
        out.append(f"neuron layer(s) {', '.join(repr(n) for n in silent)} never fired over {counts.samples} "
                   "sample(s): the layers they feed receive no spikes, so the SNN estimate is low because the network "
                   "is silent (check the weights, the thresholds and the input encoding before comparing it)")
    neurons = [c for c in counts.layers if c.out_elements]
    if neurons and counts.total("out_spikes") == 0:
        out.append("no neuron layer fired at all: the SNN estimate counts no synaptic operation after the input layer")
    return out


def _per(value: float, n: int) -> Optional[float]:
    return value / n if n else None


def build_report(counts: NetworkCounts, estimates: Sequence[EnergyEstimate], models: Sequence[EnergyModel] = (),
                 meta: Optional[Dict[str, Any]] = None, model: Any = None) -> Dict[str, Any]:
    """The report as a plain dict (what ``energy.json`` holds). ``estimates[0]`` is the main estimate; ``model``
    (optional) adds NeuroBench's static metrics."""
    if not estimates:
        raise ValueError("estimates must hold at least one EnergyEstimate (the first is the main one)")
    main = estimates[0]
    total = main.total_pj
    n = counts.samples
    energy = {layer.name: layer.total for layer in main.layers}
    rows = []
    for c in counts.layers:
        e = energy.get(c.name, 0.0)
        rows.append({"name": c.name, "kind": c.kind, "sops": c.sops, "macs": c.macs, "dense_macs": c.dense_macs,
                     "neuron_updates": c.neuron_updates, "input_rate": c.input_rate, "firing_rate": c.firing_rate,
                     "energy_pJ": e, "share": e / total if total else 0.0,
                     "per_sample": {"sops": _per(c.sops, n), "macs": _per(c.macs, n),
                                    "neuron_updates": _per(c.neuron_updates, n), "out_spikes": _per(c.out_spikes, n),
                                    "energy_pJ": _per(e, n)}})
    return {"meta": dict(meta or {}), "samples": n, "main": main.label, "warnings": report_warnings(counts),
            "summary": [{"label": est.label, "method": est.method, "model": est.model, "profile": est.profile,
                         "total_pJ": est.total_pj, "per_sample_pJ": est.per_sample_pj,
                         "ratio_to_main": (est.total_pj / total) if total else None} for est in estimates],
            "layers": rows, "neurobench": neurobench_metrics(counts, model), "counts": counts.to_dict(),
            "estimates": [est.to_dict() for est in estimates], "models": [m.to_dict() for m in models]}


def _count(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:,.2f}"


def _table(report: Dict[str, Any]) -> List[List[str]]:
    head = ["layer", "kind", "SOPs", "MACs", "neuron updates", "input spike rate", "firing rate", "energy",
            "share"]
    body = [[r["name"] or "<model>", r["kind"], _count(r["per_sample"]["sops"]), _count(r["per_sample"]["macs"]),
             _count(r["per_sample"]["neuron_updates"]), _rate(r["input_rate"]), _rate(r["firing_rate"]),
             format_energy(r["per_sample"]["energy_pJ"]), f"{100 * r['share']:.1f}%"] for r in report["layers"]]
    return [head] + body


def _summary(report: Dict[str, Any]) -> List[List[str]]:
    head = ["estimate", "per sample", "x main"]
    body = [[s["label"], format_energy(s["per_sample_pJ"]),
             "-" if s["ratio_to_main"] is None else f"{s['ratio_to_main']:.3g}"] for s in report["summary"]]
    return [head] + body


def _neurobench_rows(report: Dict[str, Any]) -> List[List[str]]:
    nb = report["neurobench"]
    rows = [["metric", "value", "rule"]]

    def add(name: str, value: Any, rule: str) -> None:
        if isinstance(value, float):
            text = f"{value:.6g}"
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = "-" if value is None else str(value)
        rows.append([name, text, rule])

    for key in ("Footprint", "ParameterCount", "ConnectionSparsity"):
        if key in nb:
            add(key, nb[key], nb["rules"][key])
    add("ActivationSparsity", nb["ActivationSparsity"], nb["rules"]["ActivationSparsity"])
    for key, value in nb["SynapticOperations"].items():
        add(f"SynapticOperations {key}", value, nb["rules"]["SynapticOperations"] if key == "Effective_MACs" else "")
    add("MembraneUpdates", nb["MembraneUpdates"], nb["rules"]["MembraneUpdates"] if nb["MembraneUpdates"] is not None
        else "not counted (measure(..., neurobench=True))")
    for key, value in (nb["NeuronOperations"] or {}).items():
        add(f"NeuronOperations {key}", value, nb["rules"]["NeuronOperations"])
    for name, value in nb["ActivationSparsityByLayer"].items():
        add(f"ActivationSparsityByLayer {name}", value, "")
    return rows


def markdown_report(report: Dict[str, Any]) -> str:
    """Markdown text of a report built by :func:`build_report`."""
    def md(rows: List[List[str]]) -> List[str]:
        out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        return out + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]]

    lines = ["# Energy report", ""]
    for key, value in report["meta"].items():
        lines.append(f"- **{key}**: {value}")
    lines += [f"- **samples**: {report['samples']}", f"- **main estimate**: {report['main']}", ""]
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    lines += ["## Estimates (per sample)", ""]
    lines += md(_summary(report))
    lines += ["", "## Per layer, per sample (main estimate)", ""] + md(_table(report))
    lines += ["", "## NeuroBench metrics (per sample)", ""] + md(_neurobench_rows(report))
    if report["neurobench"]["not_covered"]:
        lines += ["", "Outside NeuroBench's definitions (counted by spikelib):", ""]
        lines += [f"- {line}" for line in report["neurobench"]["not_covered"]]
    lines += ["", "## Energy models", ""]
    for m in report["models"]:
        lines += [f"### {m['name']} ({m['technology_node']})", "", m["citation"], "", f"Where: {m['where']}", "",
                  f"Verification: {m['verification']}", ""]
    lines += ["Plots: `energy_per_layer.png`, `firing_rates.png`, `spike_raster.png` (when written).", ""]
    return "\n".join(lines)


def html_report(report: Dict[str, Any], images: Sequence[str] = ()) -> str:
    """A self-contained HTML page of a report (images referenced by file name)."""
    def table(rows: List[List[str]]) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    meta = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in report["meta"].items())
    models = "".join(f"<h3>{html.escape(m['name'])} ({html.escape(m['technology_node'])})</h3>"
                     f"<p>{html.escape(m['citation'])}</p><p>Where: {html.escape(m['where'])}</p>"
                     f"<p>Verification: {html.escape(m['verification'])}</p>" for m in report["models"])
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in report["warnings"])
    warn = f"<h2>Warnings</h2><ul>{warn}</ul>" if warn else ""
    uncovered = "".join(f"<li>{html.escape(w)}</li>" for w in report["neurobench"]["not_covered"])
    uncovered = f"<p>Outside NeuroBench's definitions (counted by spikelib):</p><ul>{uncovered}</ul>" if uncovered else ""
    imgs = "".join(f'<figure><img src="{html.escape(name)}" alt="{html.escape(name)}"></figure>' for name in images)
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}td:first-child,th:first-child"
             "{text-align:left}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Energy report</title><style>{style}</style>"
            f"</head><body><h1>Energy report</h1><ul>{meta}<li><b>samples</b>: {report['samples']}</li>"
            f"<li><b>main estimate</b>: {html.escape(report['main'])}</li></ul>{warn}<h2>Estimates (per sample)</h2>"
            f"{table(_summary(report))}<h2>Per layer, per sample (main estimate)</h2>{table(_table(report))}"
            f"<h2>NeuroBench metrics (per sample)</h2>{table(_neurobench_rows(report))}{uncovered}"
            f"<h2>Plots</h2>{imgs}<h2>Energy models</h2>{models}</body></html>")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("PNG plots need matplotlib: pip install 'spikelib[report]' (or pass plots=False)") from exc
    return plt


def _save_png(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _plots(report: Dict[str, Any], counts: NetworkCounts, out: Path) -> List[str]:
    plt = _pyplot()
    written = []
    rows = [r for r in report["layers"] if r["energy_pJ"] > 0]
    values = [r["per_sample"]["energy_pJ"] or 0.0 for r in rows]
    unit, scale = next(((u, f) for u, f in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)) if max(values, default=0) >= f),
                       ("pJ", 1.0))
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.3 * len(rows) + 1)))
    ax.barh([r["name"] or "<model>" for r in rows][::-1], [v / scale for v in values][::-1], color="#3a7")
    ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    ax.set_xlabel(f"energy per sample ({unit}), {report['main']}")
    ax.set_title(f"Energy per layer (per sample, {report['samples']} samples)")
    _save_png(fig, out / "energy_per_layer.png")
    plt.close(fig)
    written.append("energy_per_layer.png")
    inputs = [(r["name"] or "<model>", r["input_rate"]) for r in report["layers"]
              if r["input_rate"] is not None and r["firing_rate"] is None]
    neurons = [(r["name"] or "<model>", r["firing_rate"]) for r in report["layers"] if r["firing_rate"] is not None]
    panels = [(title, data, color) for title, data, color in
              (("Input spike rate of synaptic layers", inputs, "#58b"), ("Firing rate of neuron layers", neurons, "#c52"))
              if data]
    if panels:
        height = sum(max(1.5, 0.3 * len(d) + 0.8) for _, d, _ in panels)
        fig, axes = plt.subplots(len(panels), 1, figsize=(8, height), squeeze=False)
        for ax, (title, data, color) in zip(axes[:, 0], panels):
            ax.barh([n for n, _ in data][::-1], [v for _, v in data][::-1], color=color)
            ax.set_xlim(0, max(1e-9, max(v for _, v in data)) * 1.1)
            ax.set_title(title)
        axes[-1, 0].set_xlabel("fraction of nonzero values (spikes / (neurons x steps x samples))")
        _save_png(fig, out / "firing_rates.png")
        plt.close(fig)
        written.append("firing_rates.png")
    rasters = [(c.name, c.raster) for c in counts.layers if c.raster is not None]
    if rasters:
        fig, axes = plt.subplots(len(rasters), 1, figsize=(8, 1.6 * len(rasters) + 0.5), squeeze=False)
        for ax, (name, r) in zip(axes[:, 0], rasters):
            t, n = r.nonzero(as_tuple=True)
            ax.scatter(t.numpy(), n.numpy(), s=2, color="k")
            ax.set_xlim(-0.5, r.shape[0] - 0.5)
            ax.set_ylim(-0.5, r.shape[1] - 0.5)
            ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        axes[-1, 0].set_xlabel("time step")
        axes[0, 0].set_title("Spike raster of one sample")
        _save_png(fig, out / "spike_raster.png")
        plt.close(fig)
        written.append("spike_raster.png")
    return written


def write_report(out_dir: Union[str, Path], counts: NetworkCounts, estimates: Sequence[EnergyEstimate],
                 models: Sequence[EnergyModel] = (), meta: Optional[Dict[str, Any]] = None,
                 plots: bool = True, model: Any = None) -> Dict[str, Path]:
    """Write ``energy.json``, ``energy.md``, ``energy.html`` and (``plots``) the PNGs into ``out_dir``; ``model``
    (optional) adds NeuroBench's static metrics."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(counts, estimates, models, meta, model)
    images = _plots(report, counts, out) if plots else []
    files = {name: out / name for name in images}
    files["energy.json"] = atomic_write_text(out / "energy.json", json.dumps(report, indent=2) + "\n")
    files["energy.md"] = atomic_write_text(out / "energy.md", markdown_report(report))
    files["energy.html"] = atomic_write_text(out / "energy.html", html_report(report, images))
    return files
