"""The dashboard in a real browser: headless Chromium loads the page from disk (no network), runs plotly.js,
and a probe script injected for the test reports JavaScript errors and what every plot drew.

The probe records ``error``/``unhandledrejection`` events and ``console.error`` calls from the first line of
``<head>`` on, waits for the page to settle, then for each Plotly plot counts drawn SVG groups, heatmap
images and contour paths (2-D plots) or the WebGL scene's objects (the 3-D cube), renders the plot with
``Plotly.toImage`` and measures the share of non-background pixels. The report lands in
``<pre id="render-report">``, read back from ``--dump-dom``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
from helpers.dashboard_fixtures import empty_study, searched_study, single_trial_study

import archsearch.report.dashboard as dashboard

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                                        "ignore:Heartbeat of storage:UserWarning")

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync",
         # WebGL (the 3-D cube) on the software rasteriser: Chromium asks for this opt-in for local, trusted pages
         "--enable-unsafe-swiftshader")
TIMEOUT_S = 120

PROBE = r"""<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push("error: " + (e.message || e)); });
  window.addEventListener("unhandledrejection", function (e) { errors.push("unhandled rejection: " + e.reason); });
  var consoleError = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    consoleError.apply(console, arguments);
  };
  function ink(url) {  // share of pixels that differ from the top-left (background) pixel
    return new Promise(function (resolve) {
      var img = new Image();
      img.onload = function () {
        var c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
        var ctx = c.getContext("2d"); ctx.drawImage(img, 0, 0);
        var d = ctx.getImageData(0, 0, c.width, c.height).data, n = 0;
        for (var i = 0; i < d.length; i += 4) {
          if (Math.abs(d[i] - d[0]) + Math.abs(d[i + 1] - d[1]) + Math.abs(d[i + 2] - d[2]) > 30) n++;
        }
        resolve(n / (d.length / 4));
      };
      img.onerror = function () { resolve(-1); };
      img.src = url;
    });
  }
  function describe(el) {
    var fl = el._fullLayout || {}, scene = fl.scene && fl.scene._scene;
    var canvases = Array.prototype.filter.call(el.querySelectorAll("canvas"),
                                               function (c) { return c.width > 0 && c.height > 0; });
    var info = {
      id: el.id, traces: (el._fullData || []).length,
      svg: el.querySelectorAll("svg.main-svg").length,
      groups: el.querySelectorAll("g.trace").length,
      images: el.querySelectorAll(".heatmaplayer image, g.hm image").length,
      contours: el.querySelectorAll("g.contourlevel path, .contourfill path").length,
      gl: !!(scene && scene.glplot), glObjects: scene && scene.glplot ? scene.glplot.objects.length : 0,
      canvases: canvases.length, noWebGL: /WebGL is not supported/.test(el.textContent)
    };
    return Plotly.toImage(el, {format: "png", width: 500, height: 360}).then(ink).then(
      function (share) { info.ink = share; return info; },
      function (err) { errors.push("toImage " + el.id + ": " + err); info.ink = -1; return info; });
  }
  window.addEventListener("load", function () {
    setTimeout(function () {
      var plots = Array.prototype.slice.call(document.querySelectorAll(".js-plotly-plot"));
      Promise.all(plots.map(describe)).then(function (infos) {
        var notice = document.getElementById("notice");
        var out = document.createElement("pre"); out.id = "render-report";
        out.textContent = JSON.stringify({errors: errors, plots: infos,
          notice: notice && notice.offsetHeight > 0 ? notice.textContent : null});
        document.body.appendChild(out);
      });
    }, 1500);
  });
})();
</script>"""


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), *BROWSERS):
        if name and (path := shutil.which(name)):
            return path
    return None


CHROMIUM = find_chromium()
pytestmark = [pytestmark, pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary found (on Debian: apt-get install -y chromium; or set $CHROMIUM)")]


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"  # a fresh one per launch
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)


def render_report(tmp_path: Path, page: Path) -> dict:
    probed = page.with_name(f"probed-{page.name}")
    probed.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")
    run = chromium(tmp_path, probed, "--window-size=1400,1000", "--virtual-time-budget=20000", "--dump-dom")
    match = re.search(r'<pre id="render-report">(.*?)</pre>', run.stdout, re.S)
    assert match, f"no render report from Chromium (exit {run.returncode}): {run.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                      .replace("&amp;", "&"))


def check_rendered(report: dict, expected: list[str]) -> dict[str, dict]:
    assert report["errors"] == [], report["errors"]
    plots = {p["id"]: p for p in report["plots"]}
    assert sorted(plots) == sorted(f"plot-{key}" for key in expected)
    for pid, p in plots.items():
        assert p["traces"] > 0 and p["svg"] > 0, p
        assert p["ink"] > 0.02, f"{pid} rendered blank: {p}"
        if pid == "plot-cube":
            assert p["gl"] and p["canvases"] >= 1 and not p["noWebGL"], p
            assert p["glObjects"] >= 2, p  # the visible step: feasible points, budget surface (+ trained)
        else:
            assert p["groups"] > 0, p
    return plots


def with_latency(keys: list[str]) -> list[str]:
    """Latency against MACs joins the page wherever a latency model is at hand (the repository's committed ones
    under benchmarks/ when the tests run from its root): a synthetic study times nothing itself."""
    from archsearch.latency import LatencyError, find_model

    try:
        find_model("v2", "ort-cpu")
    except LatencyError:
        return keys
    return keys + ["latency-macs"]


@pytest.fixture(scope="module")
def full_page(tmp_path_factory) -> Path:
    study, url = searched_study(tmp_path_factory)
    return dashboard.write_dashboard(study, url, tmp_path_factory.mktemp("pages") / "full.html")


def test_full_dashboard_renders_without_errors(full_page, tmp_path):
    plots = check_rendered(render_report(tmp_path, full_page),
                           with_latency(["cube", "gp-maps", "marginals", "pareto", "rungs", "history"]))
    assert plots["plot-cube"]["glObjects"] == 3  # the winner's ViT depth: its first-rung job shown too
    assert plots["plot-gp-maps"]["images"] >= 4 and plots["plot-gp-maps"]["contours"] >= 4


def test_full_dashboard_screenshot(full_page, tmp_path):
    from PIL import Image

    shot = tmp_path / "dashboard.png"
    run = chromium(tmp_path, full_page, "--hide-scrollbars", "--window-size=1400,3600",
                   "--virtual-time-budget=15000", f"--screenshot={shot}")
    assert shot.is_file(), f"no screenshot (exit {run.returncode}): {run.stderr[-2000:]}"
    with Image.open(shot) as image:
        assert image.size == (1400, 3600)
        colours = image.convert("RGB").resize((350, 900)).getcolors(maxcolors=1 << 20)
        assert len(colours) > 500  # plots, not a blank or error page


@pytest.mark.parametrize("make, says", [(empty_study, "no trained job"), (single_trial_study, "a single trained job")])
def test_small_study_pages_render_and_say_so(make, says, tmp_path):
    study, url = make(tmp_path)
    page = dashboard.write_dashboard(study, url, tmp_path / "small.html")
    report = render_report(tmp_path, page)
    assert report["notice"] and says in report["notice"]  # visible in the page
    check_rendered(report, with_latency(["cube"] if make is empty_study else ["cube", "rungs", "history"]))
