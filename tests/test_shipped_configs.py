import subprocess
import sys
from pathlib import Path

import pytest

from g2l.config import SECTIONS, ConfigError, validate_file

ROOT = Path(__file__).resolve().parents[1]
# Run configs (one per cancer, plus the demo) start with this header; gate and schedule files do not.
RUN_CONFIGS = sorted(
    p for p in (ROOT / "configs").glob("*.yaml") if p.read_text().startswith("# g2l configuration")
)


def test_every_run_config_is_found():
    assert {p.stem for p in RUN_CONFIGS} >= {"demo", "brca", "prad"}


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates_every_section(path):
    sections = validate_file(path)
    assert set(sections) == set(SECTIONS), f"{path.name} lacks sections {set(SECTIONS) - set(sections)}"


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_every_key_of_a_shipped_config_is_commented(path):
    # Users edit these files: every key line carries a comment saying what it does.
    uncommented = [
        line for line in path.read_text().splitlines()
        if ":" in line and not line.lstrip().startswith("#") and "#" not in line
        and not line.rstrip().endswith(":")  # a section or nested mapping header
    ]
    assert uncommented == [], f"{path.name}: keys without a comment: {uncommented[:5]}"


def test_an_unknown_section_or_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tilling:\n  tile_px: 256\n")
    with pytest.raises(ConfigError, match="tilling.*valid sections are: run, manifest, tiling"):
        validate_file(bad)
    bad.write_text("tiling:\n  tile_pxx: 256\n")
    with pytest.raises(ConfigError, match="tile_pxx.*valid keys are"):
        validate_file(bad)


def test_cli_validate_exits_2_on_a_bad_file_and_0_on_a_good_one(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  cancr: brca\n")
    proc = subprocess.run([sys.executable, "-m", "g2l", "config", "validate", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "cancr" in proc.stderr
    good = subprocess.run(
        [sys.executable, "-m", "g2l", "config", "validate", str(ROOT / "configs/brca.yaml")],
        capture_output=True, text=True,
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip().endswith("pipeline)")
