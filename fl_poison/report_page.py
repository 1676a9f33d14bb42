"""``report.html``: a sweep's report as one self-contained page to share.

The page holds every table the report wrote (its markdown, rendered), every
figure (embedded as ``data:`` URIs, so the file stands alone: no network, no
neighbouring files) and the commands that made it. It has no script. The
markdown is the report's own (headings, paragraphs, bullet lists, pipe
tables, inline code), so a small renderer for that subset is enough.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Iterable, Sequence

PAGE = "report.html"

#: The order the report's markdown files appear in; any other .md follows, by name.
MD_ORDER = ("paper_comparison.md", "table.md", "cv_source_accuracy.md")

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
code, pre { font-family: ui-monospace, monospace; font-size: 13px; background: #f5f5f5; }
pre { padding: .7em; overflow-x: auto; white-space: pre-wrap; }
figure { display: inline-block; margin: 1em 1em 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; }
"""


_BULLET = re.compile(r"^\s*[-*]\s+")


def _inline(text: str) -> str:
    """Escape, then render `code` and **bold**."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for p in parts:
        if len(p) >= 2 and p.startswith("`") and p.endswith("`"):
            out.append(f"<code>{html.escape(p[1:-1])}</code>")
        else:
            out.append(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(p)))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _is_rule(line: str) -> bool:
    return bool(re.fullmatch(r"\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?", line.strip()))


def markdown_to_html(md: str) -> str:
    """The report's markdown subset as HTML: ``#`` headings, paragraphs, ``-`` lists, pipe tables, code."""
    lines, out, i = md.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append(f"<pre>{html.escape(chr(10).join(lines[i + 1:j]))}</pre>")
            i = j + 1
        elif m := re.match(r"(#{1,6})\s+(.*)", line):
            level = min(len(m.group(1)) + 1, 6)  # the page's own title is the only h1
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and _is_rule(lines[i + 1]):
            head = "".join(f"<th>{_inline(c)}</th>" for c in _cells(line))
            rows, i = [], i + 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(lines[i])) + "</tr>")
                i += 1
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        elif _BULLET.match(line):
            items = []
            while i < len(lines) and _BULLET.match(lines[i]):
                items.append("<li>" + _inline(_BULLET.sub("", lines[i])) + "</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"(#{1,6}\s|\||```|\s*[-*]\s)", lines[i]):
                para.append(lines[i].strip())
                i += 1
            if not para:  # a line that looks like a table row without a rule: show it as text
                para, i = [line.strip()], i + 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


def _figure(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    name = html.escape(png.name)
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{name}">'
            f"<figcaption>{name}</figcaption></figure>")


def _ordered_markdown(files: Iterable[Path]) -> list[Path]:
    md = [f for f in files if f.suffix == ".md"]
    rank = {name: i for i, name in enumerate(MD_ORDER)}
    return sorted(md, key=lambda f: (rank.get(f.name, len(MD_ORDER)), f.name))


def write_page(files: Sequence[Path], out: Path, title: str, commands: Sequence[str] = ()) -> Path:
    """Write ``out / report.html`` from the report's ``files`` (its .md and .png), one page, nothing linked."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    if commands:
        body.append("<h2>Commands</h2><pre>" + html.escape("\n".join(commands)) + "</pre>")
    for md in _ordered_markdown(files):
        body.append(f'<section id="{html.escape(md.stem)}">'
                    f"{markdown_to_html(md.read_text(encoding='utf-8'))}</section>")
    pngs = sorted((f for f in files if f.suffix == ".png"), key=lambda f: f.name)
    if pngs:
        body.append('<h2>Figures</h2><section id="figures">' + "".join(_figure(p) for p in pngs) + "</section>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
    path = out / PAGE
    path.write_text(page, encoding="utf-8")
    return path
