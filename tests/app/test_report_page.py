"""``report.html``: one self-contained page holding every table and figure of a report, and the commands.

The renderer is checked on hand-written markdown; the page of a real report is opened in headless
Chromium (Debian's package, driven by Playwright) when both are installed: it must load with no console
error and show every figure (decoded, non-zero size)."""

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from fl_poison.report import make_report
from fl_poison.report_page import markdown_to_html, write_page

from test_report import fake_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_markdown_subset_renders_headings_tables_lists_code_and_escapes():
    md = ("# Title <x>\n\nsome `a<b` and **bold** text\nsecond line\n\n- one\n- two `c`\n\n"
          "| k | v |\n|---|---|\n| a | 1 & 2 |\n| b | `x|` |\n\n```\nfl-poison run <cfg>\n```\n")
    out = markdown_to_html(md)
    assert "<h2>Title &lt;x&gt;</h2>" in out  # the page's own title is the one h1
    assert "<p>some <code>a&lt;b</code> and <strong>bold</strong> text second line</p>" in out
    assert "<ul><li>one</li><li>two <code>c</code></li></ul>" in out
    assert "<thead><tr><th>k</th><th>v</th></tr></thead>" in out
    assert "<tr><td>a</td><td>1 &amp; 2</td></tr>" in out
    assert "<pre>fl-poison run &lt;cfg&gt;</pre>" in out
    assert "<x>" not in out


def test_a_pipe_line_without_a_rule_is_text_not_a_table():
    assert markdown_to_html("| not a table |") == "<p>| not a table |</p>"


def test_page_embeds_every_figure_and_links_nothing(tmp_path):
    png = tmp_path / "fig.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (tmp_path / "table.md").write_text("| n |\n|---|\n| 3 |\n")
    (tmp_path / "paper_comparison.md").write_text("# Paper vs ours\n")
    page = write_page([tmp_path / "table.md", png, tmp_path / "paper_comparison.md"], tmp_path, "T",
                      ["fl-poison sweep e.toml --out s"]).read_text()
    assert base64.b64encode(png.read_bytes()).decode() in page
    assert page.index("Paper vs ours") < page.index("<td>3</td>")  # the comparison leads
    assert "fl-poison sweep e.toml --out s" in page
    assert not re.search(r"(src|href)=\"(?!data:)", page) and "<script" not in page


@pytest.fixture
def sweep(tmp_path):
    for i, (defense, ratio, seed) in enumerate([(d, r, s) for d in ("fedavg", "lfighter")
                                                for r in (0.1, 0.3) for s in (0, 1)]):
        fake_run(tmp_path, f"r{i}", defense, ratio, seed, src=0.5 + 0.1 * seed - ratio, f1=0.8)
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"experiment": "", "commands": ["fl-poison sweep exp.toml --sweep g --out s"], "points": []}))
    return tmp_path


def test_the_report_writes_the_page_with_every_table_figure_and_command(sweep):
    r = make_report(sweep)
    page = (sweep / "report" / "report.html").read_text()
    assert (sweep / "report" / "report.html") in [Path(f) for f in r["files"]]
    pngs = sorted((sweep / "report").glob("*.png"))
    assert len(pngs) >= 5 and page.count('src="data:image/png;base64,') == len(pngs)
    assert "<td>lfighter</td><td>0.1</td><td>2</td>" in page
    assert "fl-poison sweep exp.toml --sweep g --out s" in page and f"fl-poison report {sweep}" in page


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_page_loads_in_headless_chromium_with_no_console_error_and_every_figure_shown(sweep, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    make_report(sweep)
    page_file = sweep / "report" / "report.html"
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri(), wait_until="load")
            sizes = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
            tables = page.eval_on_selector_all("table", "ts => ts.length")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert len(sizes) == len(list((sweep / "report").glob("*.png"))) >= 5
    assert all(done and w > 100 and h > 100 for done, w, h in sizes), sizes
    assert tables >= 2
    assert (tmp_path / "report.png").stat().st_size > 10_000
