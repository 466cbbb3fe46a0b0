"""Reports of :func:`~sensei_xr.evaluation.evaluate_model`: markdown, strict JSON, files."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import numpy as np

from .metrics import METRICS

__all__ = ["report_markdown", "report_json", "write_report", "json_ready"]


def _fmt(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _fmt_ci(row: Mapping, metric: str) -> str:
    value = _fmt(row["pooled"][metric])
    ci = row.get("ci")
    if not ci or not all(np.isfinite(ci[metric])):
        return value
    return f"{value} ({ci[metric][0]:.2f}-{ci[metric][1]:.2f})"


def _bands_text(bands) -> str:
    if isinstance(bands, dict):
        return "per image (see JSON)"
    return ", ".join(bands)


def _row_label(row: Mapping) -> str:
    return f"{row['method']} {row['band_set']}" if row.get("kind") == "model" else row["method"]


def _engine_text(engine: Mapping | None) -> str:
    """The engine arguments a report was scored with, as a clause of the report's first line."""
    if not engine:
        return ", patch grid as the accessor's defaults"
    return ", patch grid " + ", ".join(f"{k}={v!r}" for k, v in sorted(engine.items()))


def report_markdown(report: Mapping) -> str:
    """The report of :func:`evaluate_model` as markdown: the pooled table and by tag."""
    boot = report["bootstrap"]
    title = report.get("dataset") or "labelled samples"
    lines = [
        f"# Accuracy on {title}",
        "",
        f"{report['n_images']} images ({', '.join(report['sensors'])}), {report['labelled_pixels']:,} "
        f"labelled pixels; model `{report['model']}`, cloud where its probability >= "
        f"{report['threshold']:g}{_engine_text(report.get('engine'))}; peers decide by their own "
        "default rules. Metrics of all pixels "
        f"pooled (paper eq. 6-10); in brackets {boot['level']:.0%} percentile bootstrap intervals "
        f"over {boot['resamples']} resamples of the images (seed {boot['seed']}). Every row is "
        "scored on the same pixels.",
        "",
        "| method | band set | bands | OA | balanced acc. | precision | recall | F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for row in report["rows"]:
        if "skipped" in row:
            notes.append(f"{row['method']} {row['band_set']}: {row['skipped']}")
            lines.append(f"| {row['method']} | {row['band_set']} | not run ({len(notes)}) | | | | | |")
            continue
        cells = [_fmt_ci(row, m) for m in METRICS]
        lines.append(f"| {row['method']} | {row['band_set']} | {_bands_text(row['bands'])} | "
                     + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Not run:", ""] + [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    done = [r for r in report["rows"] if "skipped" not in r]
    tags = sorted({k for r in done for k in r["by_tag"]})
    for key in tags:
        values = sorted({v for r in done for v in r["by_tag"].get(key, {})})
        lines += ["", f"## By {key}: OA / F1 (pooled over the images with that {key})", ""]
        lines.append(f"| {key} | images | " + " | ".join(_row_label(r) for r in done) + " |")
        lines.append("|---|---|" + "---|" * len(done))
        for v in values:
            n = max(r["by_tag"].get(key, {}).get(v, {}).get("n_images", 0) for r in done)
            cells = []
            for r in done:
                g = r["by_tag"].get(key, {}).get(v)
                cells.append("" if g is None else f"{_fmt(g['pooled']['overall_accuracy'])} / "
                                                 f"{_fmt(g['pooled']['f1'])}")
            lines.append(f"| {v} | {n} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)

def json_ready(obj):
    """A JSON-able copy: NaN and infinities as null (JSON has no NaN); tuples as lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def report_json(report: Mapping) -> str:
    """The report of :func:`evaluate_model` as strict JSON (undefined metrics are null)."""
    return json.dumps(json_ready(report), indent=1, allow_nan=False) + "\n"


def write_report(report: Mapping, out_dir: str | PathLike, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``evaluation.json`` and ``evaluation.md`` into ``out_dir``.

    Both are written under temporary names and renamed only once both are complete, so an
    interrupted run leaves no report that looks finished.

    Returns
    -------
    tuple of pathlib.Path
        The JSON and markdown paths.

    Raises
    ------
    FileExistsError
        If either exists and ``overwrite`` is False.
    """
    out_dir = Path(out_dir)
    targets = {out_dir / "evaluation.json": report_json(report), out_dir / "evaluation.md": report_markdown(report)}
    if not overwrite:
        for path in targets:
            if path.exists():
                raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    out_dir.mkdir(parents=True, exist_ok=True)
    partials = {path: path.with_name(f".{path.name}.partial") for path in targets}
    try:
        for path, text in targets.items():
            partials[path].write_text(text)
        for path, tmp in partials.items():
            os.replace(tmp, path)
    finally:
        for tmp in partials.values():
            if tmp.exists():
                tmp.unlink()
    json_path, md_path = targets
    return json_path, md_path
