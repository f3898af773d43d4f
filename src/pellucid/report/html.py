"""Self-contained HTML pages: sections, inline PNG images, tables, one style sheet.

Pictures are inlined as base64 PNG data URIs and the style sheet is embedded, so a page
opens from disk without a server and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

CSS = """
:root { --ink: #1d2430; --muted: #5d6675; --line: #e3e7ee; --card: #ffffff;
        --page: #f5f7fa; --accent: #c0392b; --ok: #1e7b4f; --bad: #b03a2e; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: var(--page); }
header { background: #17202e; color: #f4f6fa; padding: 28px 40px 22px; }
header h1 { margin: 0 0 4px; font-size: 26px; font-weight: 650; letter-spacing: .2px; }
header p { margin: 0; color: #b9c2d0; }
header .cards { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 18px; }
header .stat { background: #233046; border-radius: 8px; padding: 10px 14px; min-width: 150px; }
header .stat b { display: block; font-size: 20px; color: #fff; }
header .stat span { color: #b9c2d0; font-size: 12px; }
nav { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line);
      padding: 8px 40px; display: flex; gap: 20px; flex-wrap: wrap; }
nav a { color: var(--muted); text-decoration: none; font-weight: 550; }
nav a:hover { color: var(--accent); }
main { padding: 8px 40px 40px; max-width: 1500px; }
section { margin-top: 28px; }
section > h2 { font-size: 20px; margin: 0 0 6px; }
section > p.lead { color: var(--muted); margin: 0 0 14px; max-width: 900px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
        padding: 14px 16px; margin-bottom: 14px; }
.card h3 { margin: 0 0 10px; font-size: 15px; }
.card h3 small { color: var(--muted); font-weight: 400; margin-left: 6px; }
.row { display: flex; gap: 18px; align-items: flex-start; }
.row > .fixed { flex: none; display: flex; gap: 10px; padding-right: 18px;
                border-right: 1px solid var(--line); }
.tiles { display: grid; gap: 10px 8px; flex: 1;
         grid-template-columns: repeat(auto-fill, minmax(112px, 1fr)); }
figure { margin: 0; text-align: center; }
figure img { width: 112px; height: 112px; image-rendering: pixelated; border-radius: 4px;
             display: block; margin: 0 auto; border: 1px solid var(--line); }
figure.large img { width: 128px; height: 128px; }
figcaption { font-size: 11.5px; line-height: 1.3; margin-top: 3px; color: var(--ink); }
figcaption small { display: block; color: var(--muted); }
.failed { width: 112px; height: 112px; margin: 0 auto; border-radius: 4px; display: flex;
          align-items: center; justify-content: center; background: repeating-linear-gradient(
          45deg, #f6e3e1, #f6e3e1 6px, #fbf0ef 6px, #fbf0ef 12px); color: var(--bad);
          font-weight: 600; border: 1px solid #eccac6; }
table { border-collapse: collapse; width: 100%; background: var(--card); font-size: 13px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { color: var(--muted); font-weight: 600; background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.error { color: var(--bad); font-size: 12px; max-width: 520px; }
.bar { position: relative; height: 14px; min-width: 160px; background: #eef1f5;
       border-radius: 3px; overflow: hidden; }
.bar i { position: absolute; left: 0; top: 0; bottom: 0; background: var(--accent); }
.bar.control i { background: #7f8c9d; }
.bar em { position: absolute; top: -2px; bottom: -2px; width: 2px; background: #17202e; }
.legend { display: flex; align-items: center; gap: 8px; color: var(--muted); font-size: 12px; }
.legend img { height: 12px; width: 180px; border-radius: 2px; image-rendering: auto; }
.tokens { font: 13px/2 ui-monospace, Menlo, Consolas, monospace; }
.tok { padding: 1px 3px; border-radius: 3px; border: 1px solid transparent; }
.tok.key { border: 1.5px solid #17202e; text-decoration: underline; }
.ok { color: var(--ok); } .bad { color: var(--bad); }
footer { color: var(--muted); font-size: 12px; padding: 0 40px 30px; }
"""


@dataclass(frozen=True)
class Section:
    """One part of a report: a title (also the navigation label), an anchor and HTML."""

    title: str
    anchor: str
    body: str
    lead: str = ""

    def render(self) -> str:
        lead = f'<p class="lead">{self.lead}</p>' if self.lead else ""
        return f'<section id="{self.anchor}"><h2>{esc(self.title)}</h2>{lead}{self.body}</section>'


def esc(text: object) -> str:
    """HTML-escaped text."""
    return html.escape(str(text))


def data_uri(rgb: np.ndarray) -> str:
    """A data: URI holding a uint8 RGB picture (H, W, 3) as PNG."""
    from ..viz import png_bytes

    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")


def image(rgb: np.ndarray, alt: str, css_class: str = "") -> str:
    """An inline <img> of a uint8 RGB picture."""
    klass = f' class="{css_class}"' if css_class else ""
    return f'<img{klass} src="{data_uri(rgb)}" alt="{esc(alt)}">'


def figure(rgb: np.ndarray | None, caption: str, note: str = "", large: bool = False) -> str:
    """A captioned picture; ``None`` draws a 'failed' tile."""
    picture = image(rgb, caption) if rgb is not None else '<div class="failed">failed</div>'
    small = f"<small>{esc(note)}</small>" if note else ""
    klass = ' class="large"' if large else ""
    label = esc(caption).replace("_", "_<wbr>").replace(".", ".<wbr>")
    return f"<figure{klass}>{picture}<figcaption>{label}{small}</figcaption></figure>"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table from already-escaped cell HTML; columns in ``numeric`` align right."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if k in numeric else f"<td>{cell}</td>"
            for k, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bar(fraction: float, marker: float | None = None, control: bool = False) -> str:
    """A horizontal bar filled to ``fraction`` ∈ [0, 1], with an optional marker line."""
    width = f"{100 * min(max(fraction, 0.0), 1.0):.1f}%"
    tick = f'<em style="left:{100 * marker:.1f}%"></em>' if marker is not None else ""
    klass = "bar control" if control else "bar"
    return f'<div class="{klass}"><i style="width:{width}"></i>{tick}</div>'


def page(title: str, header: str, sections: Sequence[Section], footer: str = "") -> str:
    """A complete HTML document with navigation to each section."""
    nav = "".join(f'<a href="#{s.anchor}">{esc(s.title)}</a>' for s in sections)
    body = "".join(s.render() for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header>{header}</header><nav>{nav}</nav><main>{body}</main>"
        f"<footer>{footer}</footer></body></html>\n"
    )


__all__ = ["CSS", "Section", "bar", "data_uri", "esc", "figure", "image", "page", "table"]
