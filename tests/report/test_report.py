"""The HTML report: self-contained, escaped, atomic, and really rendered by a browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

import apir.report.html as report_html
from apir.errors import ApirError
from apir.report.html import write_report

REPO = Path(__file__).resolve().parents[2]


class _Page(HTMLParser):
    """Collects every src/href, the text of each table, and the <body> attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.imgs: list[str] = []
        self.tables: list[str] = []
        self.body: dict[str, str | None] = {}
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in ("src", "href"):
            if a.get(name) is not None:
                self.refs.append((tag, name, a[name]))
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        if tag == "body":
            self.body = a
        if tag == "table":
            if self._depth == 0:
                self.tables.append("")
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.tables[-1] += data


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


@pytest.fixture(scope="session")
def report(results_dirs, tmp_path_factory) -> Path:
    """One report of the three fabricated result sets, shared by the read-only tests."""
    return write_report(results_dirs, tmp_path_factory.mktemp("report") / "out", max_examples=3)


def test_report_is_self_contained(report):
    out = report.parent
    text = report.read_text(encoding="utf-8")
    page = _parse(text)
    assert len(page.imgs) == 3 + 5  # 3 examples, 5 charts
    assert page.refs
    for tag, attr, value in page.refs:
        url = urlparse(value)
        assert not url.scheme and not url.netloc, f"<{tag} {attr}={value}> leaves the report"
        assert not value.startswith(("/", "\\")), value
        target = (out / unquote(url.path)).resolve()
        assert target.is_relative_to(out.resolve()), value
        assert target.is_file(), f"<{tag} {attr}={value}> points to a missing file"
    assert "<link" not in text and "@import" not in text and "url(" not in text
    copies = sorted((out / "data").glob("*.metrics.json"))
    assert len(copies) == 3
    assert json.loads(copies[1].read_text())["label"] == "CBM3D"


def test_labels_are_escaped(report):
    text = report.read_text(encoding="utf-8")
    assert "<script" not in text
    assert "NAFNet &lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_overall_table_lists_every_set_and_keeps_defect_psnr_next_to_psnr(report):
    page = _parse(report.read_text(encoding="utf-8"))
    overall = next(t for t in page.tables if "degraded input" in t and "PSNR in defect" in t)
    for label in ("NAFNet <script>alert(1)</script>", "CBM3D", "NLM"):
        assert label in overall
    assert overall.index("PSNR(dB)") < overall.index("PSNR in defect") < overall.index("SSIM")
    text = report.read_text(encoding="utf-8")
    assert text.count("class='n best'") >= 6  # one best value per ranked column
    assert "is no gain" in text


def test_per_image_table_lists_worst_survival_first(report):
    text = report.read_text(encoding="utf-8")
    details = text[text.index("Per-image numbers") :]
    keys = re.findall(r"<td>([a-z]+/test/[a-z]+/\d{3})</td>", details)
    assert len(keys) == 11
    # NLM keeps 0.5 of every defect except in carpet (retention null): those and the good images last
    assert all(not k.startswith("carpet/") and "/good/" not in k for k in keys[:6])


def test_missing_or_invalid_results_dir_is_one_line_error(tmp_path, results_dirs):
    missing = tmp_path / "nope"
    with pytest.raises(ApirError, match="nope") as info:
        write_report([missing], tmp_path / "out")
    assert "\n" not in str(info.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(ApirError, match="no metrics.json"):
        write_report([results_dirs[0], bad], tmp_path / "out")
    (bad / "metrics.json").write_text("{not json")
    with pytest.raises(ApirError, match="cannot read evaluation results"):
        write_report([bad], tmp_path / "out")
    (bad / "metrics.json").write_text(json.dumps({"schema": "other/2"}))
    with pytest.raises(ApirError, match="not apir evaluation results"):
        write_report([bad], tmp_path / "out")
    with pytest.raises(ApirError, match="no results folders"):
        write_report([], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_a_foreign_folder_and_replaces_a_previous_report(tmp_path, results_dirs):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ApirError, match="not empty"):
        write_report(results_dirs[:1], foreign)
    (foreign / "index.html").write_text("<html>someone's page</html>")
    with pytest.raises(ApirError, match="not empty"):
        write_report(results_dirs[:1], foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"

    out = tmp_path / "report"
    write_report(results_dirs[:1], out, max_examples=1)
    (out / "stale.png").write_bytes(b"old")
    index = write_report(results_dirs[1:2], out, title="second run", max_examples=0)
    assert index == out / "index.html"
    assert not (out / "stale.png").exists()
    assert "second run" in index.read_text(encoding="utf-8")
    assert "No examples" in index.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_report(results_dirs[:1], empty, max_examples=0).is_file()


def test_a_crash_leaves_no_half_report(tmp_path, results_dirs, monkeypatch):
    out = tmp_path / "out"
    write_report(results_dirs[:1], out, max_examples=0)
    before = (out / "index.html").read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_html, "plot_example", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(results_dirs, out, max_examples=2)
    assert (out / "index.html").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_different_images_and_degradations_are_flagged(tmp_path, make_results):
    a = make_results("a", "model A", method="model", denoise=0.9, keep=0.9)
    b = make_results(
        "b", "model A", degradation="blur", skip=("pill/test/scratch/001", "bottle/test/good/000")
    )
    text = write_report([a, b], tmp_path / "out", max_examples=2).read_text(encoding="utf-8")
    assert "different degradations" in text and "blur" in text
    assert "hold different images" in text and "9 images common" in text
    assert "model A (2)" in text  # duplicate labels are told apart


def test_examples_skip_unreadable_images(tmp_path, make_results):
    a = make_results("a", "A")
    for clean in a.glob("images/*/*/*/clean.png"):
        clean.write_bytes(b"not a png")
    index = write_report([a], tmp_path / "out", max_examples=1)
    assert "skipped" in index.read_text(encoding="utf-8")


def test_image_dir_outside_the_results_folder_is_ignored(tmp_path, make_results):
    a = make_results("a", "A")
    data = json.loads((a / "metrics.json").read_text())
    for img in data["images"]:
        img["image_dir"] = "../../../../etc"
    (a / "metrics.json").write_text(json.dumps(data))
    text = write_report([a], tmp_path / "out").read_text(encoding="utf-8")
    assert "No examples" in text


def test_zoom_box_contains_the_defect():
    import numpy as np

    from apir.report.figures import _zoom_box

    mask = np.zeros((200, 300), bool)
    mask[190:195, 5:12] = True
    y0, y1, x0, x1 = _zoom_box(mask)
    assert 0 <= y0 <= 190 and 195 <= y1 <= 200 and 0 <= x0 <= 5 and 12 <= x1 <= 300
    assert y1 - y0 == x1 - x0 < 60  # a square zoom, much smaller than the image
    assert _zoom_box(np.zeros((10, 20), bool)) == (0, 10, 0, 20)


# ---------------------------------------------------------------------------------- browser


def _find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium; `make test` installs it first (scripts/ensure_chromium.sh), tests never do."""
    exe = _find_chromium()
    if exe is None:
        pytest.skip(
            "chromium not installed: run scripts/ensure_chromium.sh (make test does) "
            "or apt-get install chromium"
        )
    return exe


def _chromium_cmd(exe: str, profile: Path) -> list[str]:
    return [
        exe,
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
        "--virtual-time-budget=5000",
    ]


_PROBE = (
    "<script>window.addEventListener('load', function () {"
    "var im = Array.prototype.slice.call(document.images);"
    "document.body.dataset.images = im.length;"
    "document.body.dataset.brokenImages = im.filter(function (i) {"
    "return !(i.complete && i.naturalWidth > 0); }).length; });</script>"
)


def test_chromium_loads_every_image(report, chromium, tmp_path):
    """Open a copy of the report (with a probe script added) and count images that failed to load."""
    copy = tmp_path / "copy"
    shutil.copytree(report.parent, copy)
    index = copy / "index.html"
    index.write_text(
        index.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8"
    )
    cmd = [*_chromium_cmd(chromium, tmp_path / "profile"), "--dump-dom", index.as_uri()]
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = _parse(proc.stdout).body
    n_img = len(_parse(report.read_text(encoding="utf-8")).imgs)
    assert body.get("data-images") == str(n_img), proc.stderr[-2000:]
    assert body.get("data-broken-images") == "0"
