"""The audit's result: one `Check` per re-derived item, the verdict, its JSON and its table."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

_COLLAPSE_OVER = 12  # a check kind with more ok rows than this is shown as one summary row


@dataclasses.dataclass(frozen=True, kw_only=True)
class Check:
    """One audit line: what was checked, the recorded value, the value found now, and whether they match."""

    check: str
    item: str
    expected: str
    found: str
    ok: bool | None  # None: skipped (not recorded, or not reachable here): the lineage is incomplete
    detail: str = ""

    @property
    def name(self) -> str:
        """`<check> <item>`, how a mismatch is named."""
        return f"{self.check} {self.item}".strip()


def compare(
    check: str, item: str, expected: str | None, compute: Callable[[], str], detail: str = ""
) -> Check:
    """Run one comparison; not recorded is a skipped line, a missing or unreadable artifact a failed one."""
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


def skip(check: str, why: str, item: str = "") -> Check:
    """A check that could not run here (the reason says what to record or provide)."""
    return Check(check=check, item=item, expected="-", found="-", ok=None, detail=why)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuditReport:
    """The audit of one model version.

    It passes only when no check failed *and* none was skipped: a skipped check means part of the
    lineage was not re-derived, and an audit must not pass blind. `allow_incomplete` accepts skips.
    """

    model: str
    version: int
    aliases: tuple[str, ...]
    checks: tuple[Check, ...]
    allow_incomplete: bool = False

    @property
    def failures(self) -> list[Check]:
        """The checks whose found value differs from the recorded one."""
        return [c for c in self.checks if c.ok is False]

    @property
    def skipped(self) -> list[Check]:
        """The checks that could not run: what the lineage lacks, or what is not reachable here."""
        return [c for c in self.checks if c.ok is None]

    @property
    def complete(self) -> bool:
        """True when every check ran."""
        return not self.skipped

    @property
    def ok(self) -> bool:
        """No check failed, and every check ran (or `allow_incomplete`)."""
        return not self.failures and (self.complete or self.allow_incomplete)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the version, the verdict and every check."""
        return {
            "model": self.model,
            "version": self.version,
            "aliases": list(self.aliases),
            "ok": self.ok,
            "complete": self.complete,
            "allow_incomplete": self.allow_incomplete,
            "failed": [c.name for c in self.failures],
            "skipped": [c.name for c in self.skipped],
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
                "skipped": [c.name for c in self.skipped],
            }
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
    """Print the audit table (stdout), then one line per mismatch and per skipped check (stderr)."""
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
    colour = "yellow" if report.allow_incomplete else "red"
    for c in report.skipped:
        console.print(f"[{colour}]SKIPPED {c.name}[/{colour}]: {c.detail}", highlight=False, soft_wrap=True)
    if report.failures:
        verdict = f"[red]{len(report.failures)} mismatch(es)[/red]"
    elif report.skipped and not report.allow_incomplete:
        verdict = (
            f"[red]incomplete: {len(report.skipped)} check(s) skipped, so this audit cannot vouch for "
            f"the version[/red] (record the missing lineage, or pass --allow-incomplete to accept it)"
        )
    elif report.skipped:
        verdict = f"[yellow]every check that ran passes; {len(report.skipped)} skipped (--allow-incomplete)"
        verdict += "[/yellow]"
    else:
        verdict = "[green]all checks pass[/green]"
    console.print(f"audit {report.model} v{report.version}: {verdict}", soft_wrap=True)


def _short(value: str) -> str:
    """Hex digests shown by their first 16 characters (the JSON keeps them whole)."""
    return re.sub(r"\b([0-9a-f]{16})[0-9a-f]{24,}\b", r"\1…", value)
