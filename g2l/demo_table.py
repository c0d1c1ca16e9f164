"""The distillation story as a table: teacher, untrained student, distilled student(s) on the same metrics.

`make demo` prints one row per model of its run's report (the demo row); benchmarks/g2l_mini.py prints
the same columns as mean +- spread over seeds for several losses. One list of columns serves both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: (report metric, column title): what the paper reports, in its order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("lp_auc", "LP AUC"),
    ("lp_balanced_accuracy", "LP bal.acc"),
    ("knn_balanced_accuracy", "kNN bal.acc"),
    ("pathorob_ri@k=10", "PathoROB@10"),
    ("de_jong_ri@k=10", "de Jong@10"),
    ("cka_teacher", "CKA to teacher"),
)


def model_metrics(report: Mapping[str, Any], model: str, benchmark: str) -> dict[str, float | None]:
    """The table's metrics of one model on one benchmark of a report.json (None where absent)."""
    values = report["models"][model]["benchmarks"][benchmark]
    out: dict[str, float | None] = {}
    for key, _ in COLUMNS:
        v = values.get(key)
        out[key] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
    return out


def _cell(values: Sequence[float | None]) -> str:
    """One value as 0.123, several as mean +- half their range (the spread over seeds)."""
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    mean = sum(present) / len(present)
    if len(present) == 1:
        return f"{mean:.3f}"
    return f"{mean:.3f} +- {(max(present) - min(present)) / 2:.3f}"


def format_table(rows: Sequence[tuple[str, Sequence[Mapping[str, float | None]]]]) -> str:
    """A fixed-width text table: one row per (name, runs), each cell the mean +- spread over its runs."""
    header = ["model", *[title for _, title in COLUMNS]]
    body = [[name, *[_cell([run.get(key) for run in runs]) for key, _ in COLUMNS]] for name, runs in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([line(header), line(["-" * w for w in widths]), *[line(r) for r in body]])


def markdown_table(rows: Sequence[tuple[str, Sequence[Mapping[str, float | None]]]]) -> str:
    """The same table in Markdown (benchmarks/RESULTS.md)."""
    header = ["model", *[title for _, title in COLUMNS]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, runs in rows:
        lines.append("| " + " | ".join([name, *[_cell([r.get(k) for r in runs]) for k, _ in COLUMNS]]) + " |")
    return "\n".join(lines)


def demo_rows(report: Mapping[str, Any], benchmark: str, *, teacher: str = "teacher",
              untrained: str = "untrained-student", student: str = "student"
              ) -> list[tuple[str, list[dict[str, float | None]]]]:
    """The demo row: teacher, untrained student and distilled student of one report (those present)."""
    names = [(teacher, "teacher"), (untrained, "untrained student"), (student, "distilled student")]
    return [(label, [model_metrics(report, name, benchmark)]) for name, label in names
            if name in report["models"]]
