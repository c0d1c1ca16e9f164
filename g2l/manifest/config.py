"""The `manifest:` config section: which manifest a run uses, and at which git revision."""

from __future__ import annotations

import dataclasses

from g2l.config import require
from g2l.manifest.io import Manifest, load


@dataclasses.dataclass(frozen=True, kw_only=True)
class ManifestConfig:
    """Where the run's manifest lives (`path`, local or gs://) and the git revision to read it at (`rev`)."""

    path: str
    rev: str | None = None
    repo: str | None = None

    def __post_init__(self) -> None:
        require(bool(self.path.strip()), "manifest.path is empty; name the manifest, e.g. manifests/brca.csv")
        require(not (self.rev and self.path.startswith("gs://")),
                f"manifest.rev = {self.rev!r} with manifest.path = {self.path!r}: a revision applies to a "
                "path inside a git/DVC repository; drop rev or give the repo-relative path")

    def load(self) -> Manifest:
        """Load (and validate) the manifest this config names."""
        return load(self.path, rev=self.rev, repo=self.repo)
