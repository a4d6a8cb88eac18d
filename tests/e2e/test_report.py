"""`fusionlog report RUN_DIR` on a small real run, opened in headless Chromium (Debian's package, which
.ci/run installs): a non-empty screenshot, no console output (errors or images that do not render), and
every section filled."""
import re
import shutil
import subprocess

import pytest

from fusionlog.cli import main
from fusionlog.config import load_config
from fusionlog.pipeline import train

from tests.conftest import ROOT
from tests.e2e.test_fusion import FAST

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ("run", "scores", "routing", "distill", "flagged")


@pytest.fixture(scope="module")
def run_dir(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("report_run")
    cfg = load_config(ROOT / "configs" / "demo.yaml",
                      [f"run.output_dir={out}", f"data.output_dir={out}/prepared", *FAST, "teacher.kind=keyword",
                       "retrieval.backend=memory", "distill.rounds=2", "distill.epsilon0=0.5",
                       "distill.epsilon_step=0.0"])
    train(cfg)
    return out


def _chromium(tmp_path, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
                           "--virtual-time-budget=3000", *args, url], capture_output=True, text=True, timeout=120)


def _sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page, re.S))


def test_report_without_labels_shows_no_classes(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    assert f"report: {run_dir}/report.html" in capsys.readouterr().out
    page = (run_dir / "report.html").read_text()
    assert set(_sections(page)) == set(SECTIONS)
    assert "labels are read only by the evaluator" in page and "anomalous)" not in _sections(page)["scores"]
    assert "src=\"http" not in page and "<link" not in page  # self-contained


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run does)")
def test_report_opens_in_headless_chromium_with_every_section_filled(run_dir, tmp_path):
    assert main(["report", str(run_dir), "--labels"]) == 0
    url = (run_dir / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    taken = _chromium(tmp_path, url, f"--screenshot={shot}", "--window-size=1100,2400")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    dumped = _chromium(tmp_path, url, "--dump-dom")
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console  # the page logs nothing unless something failed
    assert 'data-images-ok="true"' in dumped.stdout  # every inline plot decoded and rendered
    sections = _sections(dumped.stdout)
    assert set(sections) == set(SECTIONS)
    for key in ("scores", "routing", "distill"):
        assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/]{1000,}', sections[key]), key
    assert "anomalous)" in sections["scores"] and "keyword rule" in sections["scores"]  # --labels: evaluation
    assert sections["distill"].count("<tr>") == 1 + 2  # header + 2 rounds
    assert sections["flagged"].count("<tr>") == 1 + 10 and "similarity" in sections["flagged"]
    assert "BGL 100 sequences (target, labels not read)" in sections["run"]
