"""Prometheus metrics shared by every stage: pushed to a Pushgateway, or written as a textfile."""

from __future__ import annotations

import os
import time
import types
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway, write_to_textfile
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

PUSHGATEWAY_ENV = "G2L_PUSHGATEWAY"
# The fan-out index of a ParallelFor task (tiling group, embedding rank): part of the grouping key, so
# parallel tasks of one stage push to groups of their own instead of overwriting each other.
TASK_ENV = "G2L_METRICS_TASK"
PROGRESS_INTERVAL_S = 15.0  # at most one mid-stage push per this many seconds (Prometheus scrapes at 30 s)


class _Labelled:
    """A collector that re-exposes another registry's samples with extra constant labels.

    The textfile has no grouping key of its own (node_exporter's textfile collector merges every
    file), so the run_id/stage/cancer labels go on each sample to keep runs apart.
    """

    def __init__(self, source: CollectorRegistry, labels: dict[str, str]) -> None:
        self.source = source
        self.labels = labels

    def collect(self) -> Iterable[Metric]:
        for family in self.source.collect():
            relabelled = Metric(family.name, family.documentation, family.type, family.unit)
            relabelled.samples = [s._replace(labels={**self.labels, **s.labels}) for s in family.samples]
            yield relabelled


def read_gateway_metrics(gateway: str, timeout_s: float = 5.0, **labels: str) -> dict[str, float]:
    """Samples on a Pushgateway's /metrics whose labels include `labels`, as {sample name: value}."""
    import urllib.request

    url = gateway if "://" in gateway else f"http://{gateway}"
    with urllib.request.urlopen(f"{url.rstrip('/')}/metrics", timeout=timeout_s) as resp:
        text = resp.read().decode()
    return dict(_matching_samples(text, labels))


def read_textfile_metrics(text: str, **labels: str) -> dict[str, float]:
    """Samples of a Prometheus text exposition whose labels include `labels`."""
    return dict(_matching_samples(text, labels))


def _matching_samples(text: str, labels: dict[str, str]) -> Iterator[tuple[str, float]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                yield sample.name, float(sample.value)


class StageMetrics:
    """Metrics of one stage run, grouped by (run_id, stage, cancer, task).

    Use as a context manager: on exit the stage duration and status are set, the group is marked
    finished (`g2l_stage_finished_timestamp_seconds`) and the metrics are pushed to `$G2L_PUSHGATEWAY`
    when set, else written to `<root>/metrics/<stage>[-<task>].prom`. Long stages call `push_progress()`
    as they go, so the dashboard follows them while they run.
    """

    def __init__(
        self,
        stage: str,
        *,
        run_id: str = "local",
        cancer: str = "none",
        root: str | None = None,
        gateway: str | None = None,
        task: str | None = None,
    ) -> None:
        self.stage = stage
        self.run_id = run_id
        self.cancer = cancer
        self.task = task if task is not None else os.environ.get(TASK_ENV) or "0"
        self.root = root
        self.gateway = gateway if gateway is not None else os.environ.get(PUSHGATEWAY_ENV) or None
        self.registry = CollectorRegistry()
        self._started = time.monotonic()
        self._metrics: dict[str, Counter | Gauge] = {}
        self._last_push = 0.0
        self.duration = self.gauge("stage_duration_seconds", "Wall time of the stage run")
        self.success = self.gauge("stage_success", "1 when the stage finished without error")
        self.finished = self.gauge(
            "stage_finished_timestamp_seconds", "Unix time the stage ended (0 while it runs)"
        )
        self.failures = self.counter("failures_total", "Items (slides, parts, ...) that failed")

    def counter(self, name: str, documentation: str) -> Counter:
        """A counter named `g2l_<name>` (created once, then returned again)."""
        full = f"g2l_{name}"
        if full not in self._metrics:
            self._metrics[full] = Counter(full, documentation, registry=self.registry)
        metric = self._metrics[full]
        if not isinstance(metric, Counter):
            raise TypeError(f"{full} is already a gauge")
        return metric

    def gauge(self, name: str, documentation: str) -> Gauge:
        """A gauge named `g2l_<name>` (created once, then returned again)."""
        full = f"g2l_{name}"
        if full not in self._metrics:
            self._metrics[full] = Gauge(full, documentation, registry=self.registry)
        metric = self._metrics[full]
        if not isinstance(metric, Gauge):
            raise TypeError(f"{full} is already a counter")
        return metric

    @property
    def grouping_key(self) -> dict[str, str]:
        """Pushgateway grouping key: one group per run, stage, cancer and fan-out task."""
        return {"run_id": self.run_id, "stage": self.stage, "cancer": self.cancer, "task": self.task}

    def textfile_uri(self) -> str | None:
        """Where the textfile goes when no Pushgateway is configured (one file per fan-out task)."""
        if self.root is None:
            return None
        suffix = "" if self.task == "0" else f"-{self.task}"
        return f"{self.root.rstrip('/')}/metrics/{self.stage}{suffix}.prom"

    def push_progress(self, *, force: bool = False) -> str | None:
        """Publish the metrics now, mid-stage (at most every PROGRESS_INTERVAL_S unless `force`).

        The training loop calls it at every log step; errors are reported, never raised.
        """
        now = time.monotonic()
        if not force and now - self._last_push < PROGRESS_INTERVAL_S:
            return None
        self._last_push = now
        try:
            return self.publish()
        except Exception as push_error:  # a metrics outage must not stop training
            from g2l.progress import console

            console.print(f"[yellow]warning: metrics not published: {push_error}[/yellow]")
            return None

    def _labelled_registry(self) -> CollectorRegistry:
        out = CollectorRegistry()
        out.register(_Labelled(self.registry, self.grouping_key))
        return out

    def publish(self) -> str | None:
        """Push to the gateway or write the textfile; returns where the metrics went."""
        self.duration.set(time.monotonic() - self._started)
        if self.gateway:
            push_to_gateway(self.gateway, job="g2l", registry=self.registry, grouping_key=self.grouping_key)
            return self.gateway
        target = self.textfile_uri()
        if target is None:
            return None
        if target.startswith("gs://"):
            from g2l import storage  # lazy: keeps metrics importable without cloud libraries

            local = Path(os.environ.get("TMPDIR", "/tmp")) / f"g2l-{self.stage}-{os.getpid()}.prom"
            write_to_textfile(str(local), self._labelled_registry())
            storage.put_file(local, target)
            local.unlink(missing_ok=True)
        else:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(target, self._labelled_registry())  # temp file then rename: atomic
        return target

    def __enter__(self) -> StageMetrics:
        self._started = time.monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.success.set(0 if exc_type else 1)
        self.finished.set(time.time())
        try:
            self.publish()
        except Exception as push_error:  # metrics must never hide the stage's own error or result
            from g2l.progress import console

            console.print(f"[yellow]warning: metrics not published: {push_error}[/yellow]")


def run_groups(gateway: str, run_id: str, timeout_s: float = 10.0) -> list[dict[str, str]]:
    """The grouping keys of every group on the Pushgateway that belongs to `run_id` (its /api/v1/metrics)."""
    import json
    import urllib.request

    url = gateway if "://" in gateway else f"http://{gateway}"
    with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/metrics", timeout=timeout_s) as resp:
        groups = json.load(resp).get("data") or []
    return [dict(g["labels"]) for g in groups if g.get("labels", {}).get("run_id") == run_id]


def delete_run_groups(gateway: str, run_id: str, *, job: str = "g2l") -> int:
    """Delete every Pushgateway group of a finished run; returns how many went.

    Once deleted, Prometheus marks the run's series stale at its next scrape (they end in Grafana
    instead of repeating their last value forever); the history stays in Prometheus.
    """
    from prometheus_client import delete_from_gateway

    groups = [g for g in run_groups(gateway, run_id) if g.get("job") == job]
    for labels in groups:
        key = {k: v for k, v in labels.items() if k != "job"}
        delete_from_gateway(gateway, job=job, grouping_key=key)
    return len(groups)
