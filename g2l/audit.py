"""`g2l audit`: re-derive every hash in a registered version's lineage and say, line by line, what matches."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from g2l.registry import blobs, lineage
from g2l.registry.config import RegistryConfig
from g2l.registry.store import RegistryError, alias_version, model_name, open_client, resolve_uri

_COLLAPSE_OVER = 12  # a check kind with more ok rows than this is shown as one summary row


@dataclasses.dataclass(frozen=True, kw_only=True)
class Check:
    """One audit line: what was checked, the recorded value, the value found now, and whether they match."""

    check: str
    item: str
    expected: str
    found: str
    ok: bool | None  # None: not checkable (not recorded, or unavailable here)
    detail: str = ""

    @property
    def name(self) -> str:
        """`<check> <item>`, how a mismatch is named."""
        return f"{self.check} {self.item}".strip()


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuditReport:
    """The audit of one model version."""

    model: str
    version: int
    aliases: tuple[str, ...]
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not fail the audit)."""
        return not self.failures

    @property
    def failures(self) -> list[Check]:
        """The checks whose found value differs from the recorded one."""
        return [c for c in self.checks if c.ok is False]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the version, the verdict and every check."""
        return {
            "model": self.model,
            "version": self.version,
            "aliases": list(self.aliases),
            "ok": self.ok,
            "failed": [c.name for c in self.failures],
            "checks": [dataclasses.asdict(c) for c in self.checks],
        }

    def write_json(self, path: str | Path) -> None:
        """Write the JSON form atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        os.replace(tmp, path)

    def summary_line(self) -> str:
        """The machine-readable last output line of `g2l audit`."""
        return json.dumps(
            {
                "model": self.model,
                "version": self.version,
                "ok": self.ok,
                "checks": len(self.checks),
                "failed": [c.name for c in self.failures],
            }
        )


def _compare(
    check: str, item: str, expected: str | None, compute: Callable[[], str], detail: str = ""
) -> Check:
    """Run one comparison; a missing or unreadable artifact is a failed check naming the error."""
    if not expected:
        return Check(check=check, item=item, expected="(not recorded)", found="-", ok=None, detail=detail)
    try:
        found = compute()
    except FileNotFoundError as exc:
        return Check(
            check=check, item=item, expected=expected, found=f"missing: {exc.filename or exc}", ok=False
        )
    except Exception as exc:  # any failure to re-derive is a failed line, not a crashed audit
        return Check(check=check, item=item, expected=expected, found=f"error: {exc}", ok=False)
    return Check(check=check, item=item, expected=expected, found=found, ok=found == expected, detail=detail)


def _skip(check: str, why: str) -> Check:
    return Check(check=check, item="", expected="-", found="-", ok=None, detail=why)


def _manifest_checks(lin: Mapping[str, str]) -> Iterator[Check]:
    uri = lin.get("manifest_uri")
    if not uri:
        yield _skip("manifest", "no manifest_uri in the lineage")
        return
    rev, repo = lin.get("manifest_rev"), lin.get("manifest_repo")
    where = f"{uri}@{rev}" if rev else uri
    yield _compare(
        "manifest",
        where,
        lin.get("manifest_sha256"),
        lambda: lineage.manifest_hash(uri, rev, repo),
        "content hash at its revision",
    )
    try:
        rows = lineage.manifest_rows(uri, rev, repo)
    except Exception as exc:
        yield Check(check="slide", item="(all)", expected="manifest rows", found=f"error: {exc}", ok=False)
        return
    for row in rows:
        slide_id, slide_uri, recorded = str(row.get("slide_id")), row.get("uri"), row.get("checksum")
        if not recorded or not slide_uri:
            yield Check(
                check="slide", item=slide_id, expected="(no checksum in manifest)", found="-", ok=None
            )
            continue
        try:
            kind, _ = blobs.split_checksum(str(recorded))
        except ValueError as exc:
            yield Check(check="slide", item=slide_id, expected=str(recorded), found=f"error: {exc}", ok=False)
            continue
        expected = f"{kind}:{blobs.split_checksum(str(recorded))[1]}"  # md5 lower-cased as storage reports it
        yield _compare(
            "slide", slide_id, expected, functools.partial(blobs.checksum_uri, str(slide_uri), kind)
        )


def _shard_checks(lin: Mapping[str, str]) -> Iterator[Check]:
    index_uri = lin.get("shards_index")
    if not index_uri:
        yield _skip("shards index", "no shards_index in the lineage")
        return
    yield _compare(
        "shards index", index_uri, lin.get("shards_index_sha256"), lambda: blobs.sha256_uri(index_uri)
    )
    try:
        index = blobs.read_json(index_uri)
    except Exception as exc:
        yield Check(check="shard", item="(all)", expected="index.json", found=f"error: {exc}", ok=False)
        return
    if lin.get("shards_sha256"):
        yield _compare(
            "shard set", "index.json sha256", lin["shards_sha256"], lambda: str(index.get("sha256"))
        )
    base = blobs.parent(index_uri)
    for entry in index.get("shards") or []:
        uri = blobs.join(base, entry["name"])
        yield _compare("shard", entry["name"], entry.get("sha256"), functools.partial(blobs.sha256_uri, uri))


def _cache_checks(lin: Mapping[str, str]) -> Iterator[Check]:
    cache_dir = lin.get("cache_dir")
    if not cache_dir:
        yield _skip("embedding cache", "no cache_dir in the lineage")
        return
    index_uri = blobs.join(cache_dir, "index.json")
    yield _compare(
        "embedding cache index", index_uri, lin.get("cache_index_sha256"), lambda: blobs.sha256_uri(index_uri)
    )
    try:
        index = blobs.read_json(index_uri)
    except Exception as exc:
        yield Check(check="cache part", item="(all)", expected="index.json", found=f"error: {exc}", ok=False)
        return
    yield _compare("embedding cache key", cache_dir, lin.get("cache_key"), lambda: str(index.get("key")))
    yield _compare(
        "teacher weights",
        str(index.get("teacher", "")),
        lin.get("teacher_weights_sha256"),
        lambda: str(index.get("weights_sha256")),
        "as recorded in the cache index",
    )
    for part in index.get("parts") or []:
        uri = blobs.join(cache_dir, part["file"])
        yield _compare(
            "cache part", part["file"], part.get("sha256"), functools.partial(blobs.sha256_uri, uri)
        )


def _student_checks(lin: Mapping[str, str]) -> Iterator[Check]:
    student = lin.get("student_uri")
    if not student:
        yield _skip("student", "no student_uri in the lineage")
        return
    weights = blobs.join(student, lineage.WEIGHTS_FILE)
    yield _compare(
        "student weights", weights, lin.get("student_weights_sha256"), lambda: blobs.sha256_uri(weights)
    )
    cfg_uri = blobs.join(student, lineage.CONFIG_FILE)
    yield _compare(
        "student config.json", cfg_uri, lin.get("student_config_sha256"), lambda: blobs.sha256_uri(cfg_uri)
    )

    def config_sha() -> str:
        from g2l.config import config_hash

        cfg = blobs.read_json(cfg_uri)
        block = lineage.config_block(cfg)
        return config_hash(dict(block)) if block is not None else str(cfg.get("config_sha256"))

    yield _compare("config", "distillation config hash", lin.get("config_sha256"), config_sha)


def audit_lineage(lin: Mapping[str, str]) -> list[Check]:
    """Every re-derivable check of a lineage: manifest, slides, shards, cache, student."""
    checks: list[Check] = []
    for group in (_manifest_checks, _shard_checks, _cache_checks, _student_checks):
        checks.extend(group(lin))
    return checks


def _registry_copy_check(client: Any, run_id: str, recorded: str | None) -> Check:
    """The weights the registry serves (the run's artifact) still hash to the recorded value."""

    def compute() -> str:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, f"student/{lineage.WEIGHTS_FILE}", tmp)
            return blobs.sha256_uri(path)

    return _compare("registered weights", f"runs:/{run_id}/student/{lineage.WEIGHTS_FILE}", recorded, compute)


def _deep_checks(
    tags: Mapping[str, str], lin: Mapping[str, str], tolerance: float, client: Any, run_id: str
) -> list[Check]:
    """Re-run the recorded evaluation of the candidate and compare each metric within `tolerance`.

    The report logged with the version gives the evaluation config, the benchmark files and the
    teacher's spec; the candidate is the student at its lineage path (its weights are checked above).
    """
    try:
        evaluate_mod = importlib.import_module("g2l.evaluate")
        run_evaluate = evaluate_mod.run_evaluate
    except (ImportError, AttributeError):
        return [
            _skip("deep evaluation", "deep audit unavailable: g2l.evaluate.run_evaluate is not installed")
        ]
    from g2l.registry.promote import recorded_benchmarks

    candidate = tags.get("g2l.candidate", "student")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            old = json.loads(Path(client.download_artifacts(run_id, "report.json", tmp)).read_text())
            cfg_cls = getattr(evaluate_mod, "EvaluateConfig", None)
            cfg: Any = old.get("config") or {}
            if cfg_cls is not None:
                from g2l.config import from_dict

                cfg = from_dict(cfg_cls, cfg, where="report.json:config")
            files = [str(b.get("file") or "") for b in (old.get("benchmarks") or {}).values()]
            if not files or not all(files):
                raise ValueError("report.json does not record its benchmark files")
            models = {candidate: lin["student_uri"]}
            teacher = old.get("teacher")
            if teacher and (old.get("models") or {}).get(teacher, {}).get("spec"):
                models[teacher] = old["models"][teacher]["spec"]  # CKA-to-teacher metrics need it
            new = run_evaluate(cfg, models, files, str(Path(tmp) / "eval"), quiet=True)
        except Exception as exc:  # a deep audit that cannot run is a failed line, with the reason
            return [
                Check(
                    check="deep evaluation",
                    item=candidate,
                    expected="re-run",
                    found=f"error: {exc}",
                    ok=False,
                )
            ]
    out = []
    for bench, meta in sorted((old.get("benchmarks") or {}).items()):
        now = ((new.get("benchmarks") or {}).get(bench) or {}).get("sha256")
        out.append(
            Check(
                check="benchmark data",
                item=bench,
                expected=str(meta.get("sha256")),
                found=str(now),
                ok=now == meta.get("sha256"),
            )
        )
    benches = ((new.get("models") or {}).get(candidate) or {}).get("benchmarks") or {}
    for bench, metrics in sorted(recorded_benchmarks(tags).items()):
        for metric, recorded in sorted(metrics.items()):
            value = (benches.get(bench) or {}).get(metric)
            ok = isinstance(value, int | float) and abs(float(value) - recorded) <= tolerance
            out.append(
                Check(
                    check="metric",
                    item=f"{bench}.{metric}",
                    expected=f"{recorded:.6g}",
                    found="missing" if value is None else f"{float(value):.6g}",
                    ok=ok,
                    detail=f"tolerance ±{tolerance:g}",
                )
            )
    return out


def audit(
    *,
    cancer: str,
    version: int | None = None,
    alias: str | None = None,
    deep: bool = False,
    registry_uri: str | None = None,
    config: RegistryConfig | None = None,
    artifact_root: str = "demo-output/artifacts",
) -> AuditReport:
    """Audit one version of g2l-student-<cancer> (default: the champion) against the world as it is now."""
    from mlflow.exceptions import MlflowException

    config = config or RegistryConfig()
    client = open_client(resolve_uri(registry_uri, config, artifact_root), create=False)
    name = model_name(cancer)
    mv: Any
    if version is not None:
        try:
            mv = client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise RegistryError(
                f"{name} has no version {version}; fix: see `g2l models list --cancer {cancer}`"
            ) from exc
    else:
        mv = alias_version(client, name, alias or "champion")
        if mv is None:
            raise RegistryError(
                f"{name} has no alias {alias or 'champion'!r}; fix: pass --version N "
                f"(see `g2l models list --cancer {cancer}`)"
            )
    tags = dict(mv.tags or {})
    lin = lineage.from_tags(tags)
    checks = audit_lineage(lin)
    if mv.run_id:
        checks.append(_registry_copy_check(client, mv.run_id, lin.get("student_weights_sha256")))
    if deep:
        checks.extend(_deep_checks(tags, lin, config.deep_tolerance, client, str(mv.run_id)))
    full = client.get_model_version(name, str(mv.version))
    return AuditReport(
        model=name, version=int(mv.version), aliases=tuple(sorted(full.aliases or [])), checks=tuple(checks)
    )


def _rows_for_table(checks: tuple[Check, ...]) -> list[Check]:
    """All failed and skipped rows; ok rows of a large group collapse into one summary row."""
    out: list[Check] = []
    groups: dict[str, list[Check]] = {}
    for c in checks:
        groups.setdefault(c.check, []).append(c)
    for kind, group in groups.items():
        oks = [c for c in group if c.ok]
        if len(oks) > _COLLAPSE_OVER:
            out.extend(c for c in group if not c.ok)
            out.append(
                Check(
                    check=kind,
                    item=f"{len(oks)} of {len(group)}",
                    expected="(recorded)",
                    found="(same)",
                    ok=True,
                    detail="ok rows collapsed; all are in --json",
                )
            )
        else:
            out.extend(group)
    return out


def print_report(report: AuditReport) -> None:
    """Print the audit table (stdout) and one line per mismatch (stderr)."""
    import sys

    from rich.console import Console
    from rich.table import Table

    from g2l.progress import console

    table = Table(title=f"audit {report.model} v{report.version} ({','.join(report.aliases) or 'no alias'})")
    for col in ("check", "item", "expected", "found", "ok"):
        table.add_column(col, overflow="fold")
    for c in _rows_for_table(report.checks):
        mark = {True: "[green]ok[/green]", False: "[red]MISMATCH[/red]", None: "[yellow]skipped[/yellow]"}[
            c.ok
        ]
        found = c.found if not c.detail else f"{c.found} ({c.detail})"
        table.add_row(c.check, c.item, _short(c.expected), _short(found), mark)
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    for c in report.failures:
        console.print(
            f"[red]MISMATCH {c.name}[/red]: expected {c.expected}, found {c.found}",
            highlight=False,
            soft_wrap=True,
        )
    verdict = (
        "[green]all checks pass[/green]" if report.ok else f"[red]{len(report.failures)} mismatch(es)[/red]"
    )
    console.print(f"audit {report.model} v{report.version}: {verdict}")


def _short(value: str) -> str:
    """Hex digests shown by their first 16 characters (the JSON keeps them whole)."""
    return re.sub(r"\b([0-9a-f]{16})[0-9a-f]{24,}\b", r"\1…", value)
