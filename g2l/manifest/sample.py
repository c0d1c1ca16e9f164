"""Seeded, site-stratified sampling of a training manifest from an inventory, patients kept together."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pandas as pd

from g2l.config import require
from g2l.manifest.io import canonical_columns
from g2l.manifest.schema import is_missing


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampleConfig:
    """How to sample: `n` slides, stratified by column `stratify`, seeded; val/test fractions by patient."""

    n: int
    seed: int = 0
    stratify: str = "site"
    val_fraction: float = 0.0
    test_fraction: float = 0.0

    def __post_init__(self) -> None:
        require(self.n > 0, f"sample.n = {self.n}: must be a positive number of slides")
        require(0.0 <= self.val_fraction < 1.0,
                f"sample.val_fraction = {self.val_fraction}: must be in [0, 1)")
        require(0.0 <= self.test_fraction < 1.0,
                f"sample.test_fraction = {self.test_fraction}: must be in [0, 1)")
        require(self.val_fraction + self.test_fraction < 1.0,
                f"sample.val_fraction + test_fraction = {self.val_fraction + self.test_fraction}: "
                "must be < 1 so that some slides remain for training")
        require(bool(self.stratify), "sample.stratify: name a column, e.g. site")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sample:
    """The sampled manifest, the per-stratum slide quotas it aimed at, and notes for the user."""

    df: pd.DataFrame
    quotas: dict[str, int]
    problems: list[str]


def largest_remainder(counts: dict[str, int], total: int) -> dict[str, int]:
    """Split `total` over keys in proportion to `counts` (Hamilton's method); ties: larger, then key."""
    whole = sum(counts.values())
    if whole == 0 or total <= 0:
        return dict.fromkeys(counts, 0)
    exact = {k: total * c / whole for k, c in counts.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    left = total - sum(out.values())
    order = sorted(counts, key=lambda k: (-(exact[k] - out[k]), -counts[k], k))
    for k in order[:left]:
        out[k] += 1
    return out


def _pick(order: list[str], sizes: dict[str, int], quota: int, taken: set[str]) -> int:
    """Take whole patients from `order` while they fit in `quota`; returns the slides taken."""
    got = 0
    for pid in order:
        if got == quota:
            break
        if pid not in taken and got + sizes[pid] <= quota:
            taken.add(pid)
            got += sizes[pid]
    return got


def sample_manifest(inventory: pd.DataFrame, config: SampleConfig) -> Sample:
    """Sample `config.n` slides, each stratum in proportion to its share (largest remainder), whole patients.

    Deterministic for a seed and independent of the inventory's row order. Patients without a
    `patient_id` count as one patient per slide. Splits (val/test by fraction, the rest train) are
    assigned by patient, again stratified.
    """
    col = config.stratify
    require(col in inventory.columns,
            f"sample.stratify = {col!r}: the inventory has no such column; "
            f"it has {', '.join(map(str, inventory.columns))}")
    require("slide_id" in inventory.columns, "inventory: a 'slide_id' column is required")
    problems: list[str] = []
    inv = inventory.sort_values("slide_id", kind="mergesort").reset_index(drop=True)
    strata_of_slide = ["" if is_missing(v) else str(v) for v in inv[col]]
    if any(s == "" for s in strata_of_slide):
        problems.append(f"{strata_of_slide.count('')} slide(s) have no {col}; they form their own stratum")
    if "patient_id" in inv.columns:
        patients = [str(s) if is_missing(p) else str(p) for s, p in zip(inv["slide_id"], inv["patient_id"],
                                                                          strict=True)]
    else:
        patients = [str(s) for s in inv["slide_id"]]

    sizes: Counter[str] = Counter(patients)
    by_patient: dict[str, Counter[str]] = {}
    for pid, stratum in zip(patients, strata_of_slide, strict=True):
        by_patient.setdefault(pid, Counter())[stratum] += 1
    # A patient with slides at two sites (rare outside TCGA) counts where most of them are.
    stratum_of = {pid: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for pid, c in by_patient.items()}
    members: dict[str, list[str]] = {}
    for pid in sorted(sizes):
        members.setdefault(stratum_of[pid], []).append(pid)
    stratum_sizes = {s: sum(sizes[p] for p in ps) for s, ps in sorted(members.items())}

    total = len(inv)
    n = config.n
    if n > total:
        problems.append(f"asked for {n} slides but the inventory has {total}; taking all of them")
        n = total
    quotas = largest_remainder(stratum_sizes, n)
    rng = np.random.default_rng(config.seed)
    orders = {s: [members[s][i] for i in rng.permutation(len(members[s]))] for s in stratum_sizes}
    taken: set[str] = set()
    got = {s: _pick(orders[s], sizes, quotas[s], taken) for s in stratum_sizes}
    short = n - sum(got.values())
    if short > 0:
        # Whole patients can overshoot a quota; fill what is left from the strata furthest below theirs.
        for s in sorted(stratum_sizes, key=lambda s: (got[s] - quotas[s], s)):
            if short == 0:
                break
            extra = _pick(orders[s], sizes, short, taken)
            got[s] += extra
            short -= extra
    if short > 0:
        problems.append(f"took {n - short} slides, not {n}: "
                        "the remaining patients have too many slides to fit")

    keep = [p in taken for p in patients]
    out = inv.loc[np.asarray(keep, dtype=bool)].reset_index(drop=True)
    out_patients = [p for p, k in zip(patients, keep, strict=True) if k]
    if "split" in out.columns and (out["split"].astype(str).str.strip() != "").any():
        problems.append("the inventory's 'split' column was replaced by the sampled split")
    out["split"] = _assign_splits(out_patients, sizes, stratum_of, config)
    return Sample(df=out[canonical_columns(list(out.columns))], quotas=quotas, problems=problems)


def _assign_splits(patients: list[str], sizes: Counter[str], stratum_of: dict[str, str],
                   config: SampleConfig) -> list[str]:
    """val/test/train per patient: each stratum gives its share of val and test slides."""
    if config.val_fraction == 0 and config.test_fraction == 0:
        return ["train"] * len(patients)
    members: dict[str, list[str]] = {}
    for pid in sorted(set(patients)):
        members.setdefault(stratum_of[pid], []).append(pid)
    counts = {s: sum(sizes[p] for p in ps) for s, ps in sorted(members.items())}
    n = len(patients)
    quotas = {
        "test": largest_remainder(counts, round(config.test_fraction * n)),
        "val": largest_remainder(counts, round(config.val_fraction * n)),
    }
    # An independent stream, so changing a fraction never changes which slides are sampled.
    rng = np.random.default_rng([config.seed, 1])
    split_of: dict[str, str] = {}
    for s in counts:
        order = [members[s][i] for i in rng.permutation(len(members[s]))]
        assigned: set[str] = set()
        for split in ("test", "val"):
            before = set(assigned)
            _pick(order, sizes, quotas[split][s], assigned)
            split_of.update(dict.fromkeys(assigned - before, split))
    return [split_of.get(p, "train") for p in patients]
