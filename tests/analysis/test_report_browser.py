"""The report in a real headless browser (Chromium): its scripts run without error and every
plot is drawn. Skips, saying why, where no Chromium is installed (CI installs it: .ci/run)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hgsearch.analysis.report import write_report
from hgsearch.results import load_results, write_curve
from tests.results_fixtures import write_results

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=30000")
# Injected into a copy of the page, before any of its scripts: records uncaught errors and,
# after load, which figures hold a drawn plotly plot, into a <pre id="probe"> of the DOM.
PROBE = """<script>window.__errors = [];
addEventListener('error', function(e) { __errors.push(String(e.message)); });
addEventListener('unhandledrejection', function(e) { __errors.push('rejected: ' + e.reason); });
addEventListener('load', function() { setTimeout(function() {
  var figs = document.querySelectorAll('figure.plot'), drawn = [];
  figs.forEach(function(f) { if (f.querySelector('.js-plotly-plot .main-svg'))
    drawn.push(f.dataset.plot); });
  var pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify({figures: figs.length, drawn: drawn, errors: __errors});
  document.body.appendChild(pre); }, 500); });</script>"""


def browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium on this machine (apt-get install chromium; .ci/run does it)")


def render(page: Path, tmp_path: Path) -> tuple[dict, str]:
    """Load ``page`` (with the probe) in headless Chromium; (probe result, browser log)."""
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1),
                      encoding="utf-8")
    run = subprocess.run([browser(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--dump-dom", probed.as_uri()], capture_output=True, text=True,
                         timeout=240)
    found = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, re.S)
    assert found, f"the page never finished loading; browser said: {run.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"')), run.stderr


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line and "Uncaught" in line]


def test_report_renders_every_plot_without_script_errors(tmp_path):
    browser()
    folder = tmp_path / "results"
    write_results(folder)
    for i in range(6):
        write_curve(folder, f"t0{i}", [{"phase": "train", "epoch": e, "val_acc": 0.1 * e}
                                       for e in (1, 2, 3)] + [{"phase": "finetune", "epoch": 1,
                                                               "val_acc": 0.35}])
    df = load_results(folder)
    df["latency_final_b1_ms"] = np.linspace(1.0, 2.0, len(df))
    page = write_report(folder, df)
    expected = re.findall(r'<figure class="plot" data-plot="([^"]+)"', page.read_text())
    assert len(expected) == 9
    probe, log = render(page, tmp_path)
    assert probe["errors"] == [] and console_errors(log) == []
    assert probe["figures"] == len(expected) and probe["drawn"] == expected


def test_the_probe_sees_a_script_error(tmp_path):
    # the check above can fail: a page whose script throws is caught by both probes
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head></head><body><figure class='plot' "
                    "data-plot='x'></figure><script>undefinedFunction()</script></body></html>")
    probe, log = render(page, tmp_path)
    assert probe["errors"] and "undefinedFunction" in probe["errors"][0]
    assert probe["drawn"] == [] and console_errors(log)
