"""report.html renders in a real headless browser (Debian's chromium) with every image loaded."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from g2l.evaluate.report import render_html, write_json

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Appended to a copy of the page: after load, record how many <img> decoded (naturalWidth > 0).
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const pre = document.createElement('pre');
  pre.id = 'g2l-probe';
  pre.textContent = JSON.stringify({images: imgs.length, broken: broken,
                                    tables: document.querySelectorAll('table').length});
  document.body.appendChild(pre);
});
</script>"""


def browser_check(html_text, tmp_path):
    page = tmp_path / "page.html"
    page.write_text(html_text.replace("</body>", PROBE + "</body>"))
    profile = tmp_path / "profile"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    m = re.search(r'<pre id="g2l-probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"chromium produced no probe result (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def small_report():
    rng = np.random.default_rng(0)
    models, projections = {}, {"synthetic": {}}
    for name in ("teacher", "student"):
        m = {
            "lp_balanced_accuracy": 0.8,
            "lp_balanced_accuracy_std": 0.02,
            "lp_auc": 0.9,
            "lp_auc_std": 0.01,
            "knn_balanced_accuracy": 0.75,
            "cka_teacher": 1.0 if name == "teacher" else 0.9,
        }
        for k in (3, 5, 10, 20):
            m[f"pathorob_ri@k={k}"] = 0.5 + k / 100
            m[f"de_jong_ri@k={k}"] = float("nan") if k == 20 else 1.0 + k / 50  # NaN must not break the page
        models[name] = {
            "digest": "ab" * 32,
            "spec": f"tiny-vit-{name}",
            "embed_dim": 8,
            "benchmarks": {"synthetic": m},
            "per_seed": {"synthetic": {"lp_balanced_accuracy": [0.78, 0.8, 0.82, 0.79, 0.81]}},
        }
        projections["synthetic"][name] = {
            "xy": rng.standard_normal((60, 2)),
            "label": np.array(["a", "b", "c"] * 20),
            "site": np.array(["s1", "s2"] * 30),
        }
    report = {
        "models": models,
        "teacher": "teacher",
        "seeds": [0, 1, 2, 3, 4],
        "benchmarks": {
            "synthetic": {
                "sha256": "cd" * 32,
                "n_tiles": 60,
                "classes": ["a", "b", "c"],
                "sites": ["s1", "s2"],
            }
        },
    }
    return report, projections


@pytest.fixture(scope="module")
def chromium():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: `make system-deps` installs it)")
    return CHROMIUM


def test_report_renders_in_headless_chromium_with_all_images(chromium, tmp_path):
    report, projections = small_report()
    text = render_html(report, projections)
    result = browser_check(text, tmp_path)
    # One bar chart, one RI-vs-k figure and one projection per benchmark, all decoded.
    assert result["images"] == 3
    assert result["broken"] == []
    assert result["tables"] == 1
    write_json(tmp_path / "report.json", report)  # the same report is strict JSON (NaN -> null)
    assert (
        json.loads((tmp_path / "report.json").read_text())["models"]["student"]["benchmarks"]["synthetic"][
            "de_jong_ri@k=20"
        ]
        is None
    )


def test_browser_check_detects_a_missing_image(chromium, tmp_path):
    page = ("<html><body><img src='data:image/png;base64,AAAA' alt='bad'>"
            "<img src='nope.png' alt='gone'></body></html>")
    result = browser_check(page, tmp_path)
    assert sorted(result["broken"]) == ["bad", "gone"]
