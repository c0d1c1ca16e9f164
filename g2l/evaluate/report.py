"""Evaluation report: report.json (the contract) and a self-contained report.html with embedded plots."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

# Columns of the summary table: (metric key, heading, key of its spread or None).
TABLE_METRICS = (
    ("lp_balanced_accuracy", "LP bal. acc.", "lp_balanced_accuracy_std"),
    ("lp_auc", "LP AUC", "lp_auc_std"),
    ("knn_balanced_accuracy", "kNN bal. acc.", None),
    ("pathorob_ri@k=10", "PathoROB RI k=10", None),
    ("pathorob_ri_balanced@k=10", "PathoROB RI k=10, balanced", None),
    ("de_jong_ri@k=10", "de Jong RI k=10", None),
    ("cka_teacher", "debiased CKA to teacher (random baseline)", "cka_teacher_random_baseline"),
)


def clean_json(value: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones, so the file is strict JSON."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text to a temp name beside `path`, then rename over it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, p)


def write_json(path: str | Path, report: dict[str, Any]) -> None:
    """Write report.json (strict JSON, sorted keys, atomic)."""
    atomic_write_text(path, json.dumps(clean_json(report), indent=2, sort_keys=True, allow_nan=False) + "\n")


def pca_2d(features: np.ndarray) -> np.ndarray:
    """First two principal components of the rows (float64, via SVD of the centred matrix)."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    xy = x @ comps.T
    if xy.shape[1] < 2:
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
    return xy


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">'


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: Any, spread: Any = None, interval: Any = None, spread_kind: str = "std") -> str:
    if not _finite(value):
        return "&ndash;"
    text = f"{value:.3f}"
    if _finite(spread):
        text += f" ({spread:.3f})" if spread_kind == "baseline" else f" &plusmn; {spread:.3f}"
    if isinstance(interval, list | tuple) and len(interval) == 2 and all(_finite(v) for v in interval):
        text += f"<br><small>[{interval[0]:.3f}, {interval[1]:.3f}]</small>"
    return text


def _ri_curves(report: dict[str, Any], bench: str) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (kind, title) in zip(
        axes, (("pathorob", "PathoROB SO/(SO+OS)"), ("de_jong", "de Jong SO/OS")), strict=True
    ):
        for name, model in report["models"].items():
            metrics = model["benchmarks"].get(bench, {})
            ks = sorted(int(key.split("=")[1]) for key in metrics if key.startswith(f"{kind}_ri@k="))
            values = [metrics[f"{kind}_ri@k={k}"] for k in ks]
            values = [np.nan if v is None else v for v in values]
            ax.plot(ks, values, marker="o", label=name)
        ax.set_xlabel("k (neighbours)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"Robustness index vs k: {bench} (higher = neighbours share biology across sites)", fontsize=10
    )
    fig.tight_layout()
    return _png(fig)


def _bars(report: dict[str, Any], bench: str) -> str:
    import matplotlib.pyplot as plt

    names = list(report["models"])
    metrics = (
        ("lp_balanced_accuracy", "LP bal. acc."),
        ("lp_auc", "LP AUC"),
        ("knn_balanced_accuracy", "kNN bal. acc."),
    )
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(names) + 2), 3.4))
    width = 0.8 / len(metrics)
    for j, (key, label) in enumerate(metrics):
        xs = np.arange(len(names)) + (j - (len(metrics) - 1) / 2) * width
        means, lows, highs = [], [], []
        for i, name in enumerate(names):
            m = report["models"][name]["benchmarks"].get(bench, {})
            value = np.nan if m.get(key) is None else float(m[key])
            means.append(value)
            ci = (report["models"][name].get("intervals") or {}).get(bench, {}).get(key)
            ok = isinstance(ci, list | tuple) and len(ci) == 2 and all(_finite(v) for v in ci)
            lows.append(max(0.0, value - ci[0]) if ok else 0.0)  # type: ignore[index]
            highs.append(max(0.0, ci[1] - value) if ok else 0.0)  # type: ignore[index]
            seeds = report["models"][name].get("per_seed", {}).get(bench, {}).get(key)
            if seeds:
                jitter = np.linspace(-width / 4, width / 4, len(seeds))
                ax.scatter(
                    xs[i] + jitter, [np.nan if s is None else s for s in seeds], s=8, color="k", zorder=3
                )
        ax.bar(xs, means, width=width, yerr=[lows, highs], capsize=3, label=label, alpha=0.85)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(
        f"{bench}: seed-averaged probe and kNN, 95% interval over test patients (dots: single seeds)",
        fontsize=10,
    )
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _projection(bench: str, proj: dict[str, dict[str, np.ndarray]]) -> str:
    import matplotlib.pyplot as plt

    names = list(proj)
    fig, axes = plt.subplots(len(names), 2, figsize=(8, 3.4 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        p = proj[name]
        for c, key in enumerate(("label", "site")):
            ax = axes[r][c]
            values = p[key]
            cats = sorted(set(values.tolist()))
            cmap = plt.get_cmap("tab10" if len(cats) <= 10 else "tab20")
            for i, cat in enumerate(cats):
                sel = values == cat
                ax.scatter(p["xy"][sel, 0], p["xy"][sel, 1], s=6, color=cmap(i % cmap.N), label=str(cat))
            ax.set_title(f"{name}: coloured by {key}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.legend(fontsize=7, markerscale=2, loc="best")
    fig.suptitle(f"{bench}: PCA of embeddings", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def _table(report: dict[str, Any]) -> str:
    benches = list(report["benchmarks"])
    head1 = (
        "<tr><th rowspan=2>model</th>"
        + "".join(f"<th colspan={len(TABLE_METRICS)}>{html.escape(b)}</th>" for b in benches)
        + "</tr>"
    )
    head2 = "<tr>" + "".join(f"<th>{h}</th>" for _ in benches for _, h, _ in TABLE_METRICS) + "</tr>"
    rows = []
    for name, model in report["models"].items():
        cells = []
        for b in benches:
            m = model["benchmarks"].get(b, {})
            ci = (model.get("intervals") or {}).get(b, {})
            for key, _, spread in TABLE_METRICS:
                kind = "baseline" if spread and spread.endswith("baseline") else "std"
                text = _fmt(m.get(key), m.get(spread) if spread else None, ci.get(key), kind)
                cells.append(f"<td>{text}</td>")
        role = " (teacher)" if name == report.get("teacher") else ""
        rows.append(f"<tr><th>{html.escape(name)}{role}</th>{''.join(cells)}</tr>")
    return f"<table>{head1}{head2}{''.join(rows)}</table>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}
img{max-width:100%;display:block;margin:0.5em 0}
.meta{color:#555;font-size:12px}
"""


def render_html(report: dict[str, Any], projections: dict[str, dict[str, dict[str, np.ndarray]]]) -> str:
    """The report page: summary table, RI-vs-k curves, bars with seed spread, PCA by label and by site."""
    import matplotlib

    matplotlib.use("Agg")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>g2l evaluation report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>g2l evaluation report</h1>",
        "<p class=meta>Linear probe (LP): logistic regression on standardised embeddings, C chosen on the "
        "official validation set or a patient-grouped validation split; the score is the probe averaged over "
        f"seeds {html.escape(str(report.get('seeds')))} (&plusmn;: spread of single seeds). Out-of-fold "
        "predictions are pooled over folds. kNN: cosine, train &rarr; test. [lo, hi]: 95% bootstrap interval "
        "over test patients. Robustness index: cosine neighbours from other slides/patients; "
        "PathoROB = SO/(SO+OS) (1: neighbours share the label across sites, 0: they share only the site), "
        "pooled and within balanced class &times; site subsets; de Jong = SO/OS. "
        "CKA: debiased linear CKA to the teacher's embeddings of the same tiles (in brackets: the same for "
        "random features, what no relation reads as).</p>",
        "<h2>Models &times; benchmarks</h2>",
        _table(report),
    ]
    if report.get("skipped_models"):
        items = "".join(
            f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in report["skipped_models"].items()
        )
        parts.append(f"<p>Not evaluated:</p><ul>{items}</ul>")
    for bench, info in report["benchmarks"].items():
        parts.append(
            f"<h2>{html.escape(bench)}</h2><p class=meta>{info.get('n_tiles')} tiles, classes "
            f"{html.escape(', '.join(map(str, info.get('classes', []))))}; sites "
            f"{html.escape(', '.join(map(str, info.get('sites', []))))}; sha256 {info.get('sha256', '')[:16]}"
            f"&hellip;</p>"
        )
        parts.append(_img(_bars(report, bench), f"{bench}: probe and kNN scores"))
        parts.append(_img(_ri_curves(report, bench), f"{bench}: robustness index vs k"))
        if bench in projections and projections[bench]:
            parts.append(_img(_projection(bench, projections[bench]), f"{bench}: 2-D projection"))
    models = "".join(
        f"<li>{html.escape(n)}: {html.escape(str(m.get('spec')))} (digest {m.get('digest', '')[:16]}"
        f"&hellip;, {m.get('embed_dim')}-d)</li>"
        for n, m in report["models"].items()
    )
    parts.append(f"<h2>What was evaluated</h2><ul>{models}</ul></body></html>")
    return "\n".join(parts)


def write_html(
    path: str | Path, report: dict[str, Any], projections: dict[str, dict[str, dict[str, np.ndarray]]]
) -> None:
    """Render and atomically write report.html."""
    atomic_write_text(path, render_html(report, projections))
