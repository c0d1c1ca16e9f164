"""`g2l promote`: register a student with its lineage; move `champion` only when it passed and is better."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from g2l.metrics import StageMetrics
from g2l.registry import blobs, lineage
from g2l.registry.config import RegistryConfig
from g2l.registry.lock import file_lock, registry_mutex
from g2l.registry.policy import (
    PrimaryMetric,
    candidate_name,
    flatten_metrics,
    load_primary_metric,
    model_benchmarks,
    report_benchmarks,
)
from g2l.registry.store import (
    RegistryError,
    alias_version,
    check_uri,
    ensure_experiment,
    ensure_model,
    model_name,
    open_client,
    resolve_uri,
    sqlite_path,
)

CHAMPION = "champion"
CHALLENGER = "challenger"
REJECTED_TAG = "rejected"
KEY_TAG = "g2l.promotion_key"
METRICS_TAG = "g2l.metrics"  # JSON {benchmark: {metric: value}}: metric names like ri@k=10 are no tag keys
HOLD_ENV = "G2L_PROMOTE_HOLD_S"  # fault injection: widen the read-compare-set window (concurrency tests)
EXIT_PROMOTED = 0
EXIT_NOT_PROMOTED = 4
EXIT_ERROR = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromotionResult:
    """What a promotion did: the version, its aliases now, and why."""

    model: str
    version: int
    aliases: tuple[str, ...]
    status: str  # promoted | already-champion | challenger | rejected
    reasons: tuple[str, ...]
    created: bool
    run_id: str
    registry_uri: str
    lineage_missing: tuple[str, ...] = ()  # required lineage items not recorded: the audit will fail

    @property
    def promoted(self) -> bool:
        """True when the version is the champion after this call."""
        return self.status in ("promoted", "already-champion")

    @property
    def exit_code(self) -> int:
        """0 when the version is the champion, 4 when registered but not promoted."""
        return EXIT_PROMOTED if self.promoted else EXIT_NOT_PROMOTED

    def summary_line(self) -> str:
        """The machine-readable last output line of `g2l promote`."""
        return json.dumps(
            {
                "model": self.model,
                "version": self.version,
                "aliases": list(self.aliases),
                "status": self.status,
                "created": self.created,
                "reasons": list(self.reasons),
                "lineage_missing": list(self.lineage_missing),
            }
        )


@dataclasses.dataclass(frozen=True)
class _Inputs:
    student: str
    student_config: dict[str, Any]
    report_uri: str
    report: dict[str, Any]
    report_sha256: str
    decision_uri: str
    decision: dict[str, Any]
    weights_sha256: str

    @property
    def key(self) -> str:
        return blobs.sha256_bytes(f"{self.weights_sha256}:{self.report_sha256}".encode())


def _load_inputs(student: str, report: str, decision: str) -> _Inputs:
    for what, uri in (
        ("student weights", blobs.join(student, lineage.WEIGHTS_FILE)),
        ("student config", blobs.join(student, lineage.CONFIG_FILE)),
        ("report", report),
        ("decision", decision),
    ):
        if not blobs.exists(uri):
            raise FileNotFoundError(f"{what} {uri} not found; fix: pass the paths the earlier stages wrote")
    report_bytes = blobs.read_bytes(report)
    return _Inputs(
        student=student,
        student_config=blobs.read_json(blobs.join(student, lineage.CONFIG_FILE)),
        report_uri=report,
        report=json.loads(report_bytes),
        report_sha256=blobs.sha256_bytes(report_bytes),
        decision_uri=decision,
        decision=blobs.read_json(decision),
        weights_sha256=blobs.sha256_uri(blobs.join(student, lineage.WEIGHTS_FILE)),
    )


def _failed_reasons(decision: Mapping[str, Any]) -> list[str]:
    reasons = [
        str(r.get("reason") or r.get("rule"))
        for r in decision.get("rules") or []
        if isinstance(r, Mapping) and not r.get("passed", True)
    ]
    return reasons or ["the gate decision did not pass"]


def promote(
    *,
    student: str,
    report: str,
    decision: str,
    cancer: str,
    policy: str | None = None,
    registry_uri: str | None = None,
    config: RegistryConfig | None = None,
    artifact_root: str = "demo-output/artifacts",
    candidate: str | None = None,
    overrides: lineage.LineageOverrides | None = None,
    quiet: bool = False,
    metrics: StageMetrics | None = None,
) -> PromotionResult:
    """Log a run, register (once) a version with lineage tags, then decide `champion` under a lock.

    `metrics` (a StageMetrics the caller publishes) receives lock waits and the outcome.
    """
    config = config or RegistryConfig()
    overrides = overrides or lineage.LineageOverrides()
    primary = load_primary_metric(policy or config.policy)
    inputs = _load_inputs(student, report, decision)
    digests = {inputs.weights_sha256, str(inputs.student_config.get("weights_sha256", ""))} - {""}
    cand = candidate_name(inputs.report, inputs.decision, digests, candidate)
    cand_benches = model_benchmarks(inputs.report, cand)
    over = report_benchmarks(inputs.report, cand)
    value = primary.score(cand_benches, over)
    if value is None:
        where = primary.benchmark if primary.benchmark != "all" else ", ".join(over) or "(no benchmarks)"
        have = ", ".join(sorted(f"{b}.{m}" for b, ms in cand_benches.items() for m in ms)) or "no metrics"
        raise ValueError(
            f"report {report} lacks {primary.metric} on {where} for candidate {cand!r} (the policy's primary "
            f"metric); it has {have}; fix: evaluate those benchmarks or change the policy's primary_metric"
        )
    lin = lineage.collect(student, inputs.student_config, overrides)
    gaps = lineage.missing(lin)
    if gaps and not quiet:
        from g2l.progress import console

        console.print(
            f"[yellow]warning: the lineage of {student} lacks {', '.join(gaps)}: `g2l audit` will fail "
            f"until it is complete; fix: distil with this g2l (config.json records it) or pass "
            f"--manifest-uri, --shards-index, --cache-dir[/yellow]",
            highlight=False,
            soft_wrap=True,
        )
    uri = resolve_uri(registry_uri, config, artifact_root)
    check_uri(uri)  # before any lock file is made next to a database that cannot exist
    name = model_name(cancer)
    db = sqlite_path(uri)
    mode = config.lock if config.lock != "auto" else ("file" if db is not None else "registry")
    if mode == "file" and db is None:
        raise RegistryError(
            f"registry.lock: file needs a sqlite registry, got {uri!r}; fix: use lock: registry"
        )

    # A file lock covers the whole promotion (including creating a fresh sqlite db); the registry
    # mutex covers only the find-or-create-version and champion decision, so uploads run in parallel.
    outer = file_lock(db, config.lock_timeout_s) if mode == "file" and db else contextlib.nullcontext()
    waited = time.monotonic()
    with outer:
        lock_wait_s = time.monotonic() - waited
        client = open_client(uri)
        exp_id = ensure_experiment(client, uri, config, cancer)
        ensure_model(client, name, f"g2l students distilled for {cancer}; alias `champion` is served")
        existing = _version_with_key(client, name, inputs.key)
        run_id = (
            existing.run_id
            if existing is not None
            else _log_run(client, exp_id, inputs, cand, lin, primary, value)
        )
        inner = (
            registry_mutex(client, name, config.lock_timeout_s, config.lock_stale_s)
            if mode == "registry"
            else contextlib.nullcontext()
        )
        waited = time.monotonic()
        with inner:
            lock_wait_s += time.monotonic() - waited
            version = _version_with_key(client, name, inputs.key)
            created = version is None
            if version is None:
                version = _create_version(
                    client, name, run_id, inputs, cand, cand_benches, lin, primary, value
                )
            elif existing is None and version.run_id != run_id:
                client.delete_run(run_id)  # a concurrent twin registered the same student first
            status, reasons = _decide(client, name, version, inputs, primary, value, over)
        aliases = tuple(sorted(client.get_model_version(name, str(version.version)).aliases))
    result = PromotionResult(
        model=name,
        version=int(version.version),
        aliases=aliases,
        status=status,
        reasons=tuple(reasons),
        created=created,
        run_id=run_id,
        registry_uri=uri,
        lineage_missing=tuple(gaps),
    )
    if metrics is not None:
        metrics.gauge("promote_lock_wait_seconds", "Time spent waiting for the promotion lock").set(
            lock_wait_s
        )
        metrics.counter("promote_versions_created_total", "Model versions registered").inc(int(created))
        metrics.gauge("promote_champion", "1 when the version is the champion afterwards").set(
            int(result.promoted)
        )
        metrics.gauge("promote_version", "The registered version number").set(result.version)
        metrics.gauge("promote_primary_value", "The candidate's primary metric").set(value)
    if not quiet:
        from g2l.progress import console

        colour = "green" if result.promoted else "yellow"
        verb = "registered" if created else "already registered"
        console.print(
            f"[{colour}]{name} v{result.version} {verb}: {status}[/{colour}] ({'; '.join(reasons)})"
        )
    return result


def _version_with_key(client: Any, name: str, key: str) -> Any | None:
    found = client.search_model_versions(f"name='{name}' and tags.`{KEY_TAG}` = '{key}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def _log_run(
    client: Any,
    exp_id: str,
    inputs: _Inputs,
    cand: str,
    lin: Mapping[str, str],
    primary: PrimaryMetric,
    value: float,
) -> str:
    from mlflow.entities import Metric, Param

    # Resume: a finished run for the same student and report is reused rather than logged again.
    done = client.search_runs(
        [exp_id], f"tags.`{KEY_TAG}` = '{inputs.key}' and attributes.status = 'FINISHED'", max_results=1
    )
    if done:
        return str(done[0].info.run_id)
    tags = {
        KEY_TAG: inputs.key,
        "g2l.candidate": cand,
        "g2l.report_sha256": inputs.report_sha256,
        **lineage.as_tags(lin),
    }
    run = client.create_run(
        exp_id, run_name=f"promote-{inputs.weights_sha256[:12]}", tags={k: v[:8000] for k, v in tags.items()}
    )
    run_id = run.info.run_id
    try:
        cfg = lineage.config_block(inputs.student_config) or {
            k: v for k, v in inputs.student_config.items() if not isinstance(v, Mapping | list)
        }
        params = [Param(_clean_key(k), str(v)[:6000]) for k, v in _flatten(cfg).items()]
        for start in range(0, len(params), 100):
            client.log_batch(run_id, params=params[start : start + 100])
        now = int(time.time() * 1000)
        metrics = [Metric(_clean_key(k), v, now, 0) for k, v in flatten_metrics(inputs.report).items()]
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start : start + 1000])
        with _local_dir(inputs.student) as student_dir:
            client.log_artifacts(run_id, str(student_dir), "student")
        with tempfile.TemporaryDirectory() as tmp:
            files = {
                "report.json": blobs.read_bytes(inputs.report_uri),
                "decision.json": blobs.read_bytes(inputs.decision_uri),
                "lineage.json": json.dumps(dict(lin), indent=2, sort_keys=True).encode(),
                "model_card.md": _model_card(inputs, cand, lin, primary, value).encode(),
            }
            html = blobs.join(blobs.parent(inputs.report_uri), "report.html")
            if blobs.exists(html):
                files["report.html"] = blobs.read_bytes(html)
            for fname, data in files.items():
                (Path(tmp) / fname).write_bytes(data)
                client.log_artifact(run_id, str(Path(tmp) / fname))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id)
    return str(run_id)


def _create_version(
    client: Any,
    name: str,
    run_id: str,
    inputs: _Inputs,
    cand: str,
    cand_benches: Mapping[str, Mapping[str, float]],
    lin: Mapping[str, str],
    primary: PrimaryMetric,
    value: float,
) -> Any:
    passed = bool(inputs.decision.get("passed"))
    tags = {
        KEY_TAG: inputs.key,
        "g2l.candidate": cand,
        "g2l.report_sha256": inputs.report_sha256,
        "g2l.gate": "passed" if passed else "failed",
        "g2l.gate_rules": json.dumps(inputs.decision.get("rules") or [], sort_keys=True)[:90000],
        "g2l.primary_metric": primary.key,
        "g2l.primary_value": repr(value),
        METRICS_TAG: json.dumps(cand_benches, sort_keys=True)[:90000],
        **lineage.as_tags(lin),
    }
    source = f"{client.get_run(run_id).info.artifact_uri}/student"
    version = client.create_model_version(
        name,
        source=source,
        run_id=run_id,
        tags=tags,
        description=f"student {inputs.weights_sha256[:12]} ({cand})",
    )
    deadline = time.monotonic() + 120
    while (
        version.status == "PENDING_REGISTRATION" and time.monotonic() < deadline
    ):  # remote stores copy async
        time.sleep(0.5)
        version = client.get_model_version(name, str(version.version))
    if version.status == "FAILED_REGISTRATION":
        raise RegistryError(f"{name} v{version.version}: registration failed: {version.status_message}")
    return version


def _decide(
    client: Any,
    name: str,
    version: Any,
    inputs: _Inputs,
    primary: PrimaryMetric,
    value: float,
    over: list[str],
) -> tuple[str, list[str]]:
    """Read the champion, compare, set the alias; the caller holds the promotion lock."""
    mine = str(version.version)
    champion = alias_version(client, name, CHAMPION)
    hold = float(os.environ.get(HOLD_ENV) or 0)
    if hold > 0:
        time.sleep(hold)
    if champion is not None and str(champion.version) == mine:
        return "already-champion", [f"v{mine} is the champion"]
    if not inputs.decision.get("passed"):
        reasons = _failed_reasons(inputs.decision)
        client.set_model_version_tag(name, mine, REJECTED_TAG, "; ".join(reasons)[:90000])
        client.set_model_version_tag(name, mine, "g2l.decision", "rejected")
        return "rejected", ["gate failed: " + "; ".join(reasons)]
    promotion = inputs.decision.get("promotion")
    if champion is not None and isinstance(promotion, Mapping) and promotion.get("verdict") == "not_better":
        # The gate's paired bootstrap found no evidence that the candidate beats the champion it was
        # evaluated against (ADR 0008); point values alone would let noise move the alias.
        reason = f"gate: {promotion.get('reason') or 'not better than the champion'}"
        client.set_registered_model_alias(name, CHALLENGER, mine)
        client.set_model_version_tag(name, mine, "g2l.decision", "challenger")
        client.set_model_version_tag(name, mine, "g2l.not_promoted_reason", reason[:5000])
        return "challenger", [reason]
    champ_value = None
    if champion is not None:
        champ_value = primary.score(recorded_benchmarks(champion.tags or {}), over)
    if champion is None:
        reason = "no champion yet"
    elif champ_value is None:
        reason = f"champion v{champion.version} has no recorded {primary.key} on {over}"
    elif primary.beats(value, champ_value):
        reason = f"{primary.key} {value:.6g} beats champion v{champion.version} ({champ_value:.6g})"
    else:
        reason = f"{primary.key} {value:.6g} does not beat champion v{champion.version} ({champ_value:.6g})"
        client.set_registered_model_alias(name, CHALLENGER, mine)
        client.set_model_version_tag(name, mine, "g2l.decision", "challenger")
        client.set_model_version_tag(name, mine, "g2l.not_promoted_reason", reason)
        return "challenger", [reason]
    client.set_registered_model_alias(name, CHAMPION, mine)
    client.set_model_version_tag(name, mine, "g2l.decision", "promoted")
    client.set_model_version_tag(name, mine, "g2l.promoted_reason", reason)
    challenger = alias_version(client, name, CHALLENGER)
    if challenger is not None and str(challenger.version) == mine:
        client.delete_registered_model_alias(name, CHALLENGER)
    now = alias_version(client, name, CHAMPION)  # verify: under the lock nobody else may have moved it
    if now is None or str(now.version) != mine:
        raise RegistryError(
            f"{name}: champion alias moved to v{getattr(now, 'version', None)} while "
            f"v{mine} held the promotion lock; another promoter ignores the lock"
        )
    return "promoted", [reason]


def recorded_benchmarks(tags: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """{benchmark: {metric: value}} a version recorded in its `g2l.metrics` tag (empty when absent)."""
    try:
        raw = json.loads(tags.get(METRICS_TAG) or "{}")
    except json.JSONDecodeError:
        return {}
    out: dict[str, dict[str, float]] = {}
    for bench, metrics in raw.items() if isinstance(raw, dict) else ():
        if isinstance(metrics, dict):
            out[str(bench)] = {
                str(k): float(v)
                for k, v in metrics.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
    return out


@contextlib.contextmanager
def _local_dir(uri: str) -> Iterator[Path]:
    """A local directory with the files of `uri` (gs:// prefixes are staged through g2l.storage)."""
    from g2l import storage

    if not storage.is_remote(uri):
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory() as tmp:
        prefix = uri.rstrip("/") + "/"
        for info in storage.list_files(prefix):
            target = Path(tmp) / info.uri[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(storage.stage(info.uri)).read_bytes())
        yield Path(tmp)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, full + "."))
        else:
            out[full] = json.dumps(value) if isinstance(value, list | tuple) else value
    return out


def _clean_key(key: str) -> str:
    """MLflow keys allow letters, digits, `_ - . / ` and spaces."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", key)[:250]


def _model_card(
    inputs: _Inputs, cand: str, lin: Mapping[str, str], primary: PrimaryMetric, value: float
) -> str:
    lines = [
        f"# g2l student `{cand}`",
        "",
        f"- gate: {'passed' if inputs.decision.get('passed') else 'failed'}",
        f"- {primary.key}: {value:.6g}",
        f"- student weights sha256: {inputs.weights_sha256}",
        "",
        "## Lineage",
        "",
    ]
    lines += [f"- {k}: `{v}`" for k, v in sorted(lin.items())]
    return "\n".join(lines) + "\n"
