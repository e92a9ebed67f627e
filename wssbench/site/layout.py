"""The frame of every page: the stylesheet and script (``site.css``, ``site.js``: package data) inlined,
and a Content-Security-Policy that lets the page load nothing from elsewhere.

The policy allows the page's own stylesheet and script (by their SHA-256, so no other inline
script or style can run, whatever a record holds) and images from the site itself; every
other request (fonts, frames, fetches, scripts from anywhere) is refused by the browser.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from html import escape
from importlib import resources


@cache
def static(name: str) -> str:
    """A file of ``wssbench/site`` that is not Python (package data: ``site.css``, ``site.js``)."""
    return resources.files("wssbench.site").joinpath(name).read_text(encoding="utf-8")


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def document(title: str, body: str, *, script: bool = False, css: str = "", description: str = "") -> str:
    """A complete HTML page: ``body`` (already escaped HTML) with the site's CSS (and ``css``, rules
    the page adds) and, if ``script``, the site's JavaScript, both inline."""
    css = "\n" + static("site.css") + css
    js = "\n" + static("site.js") if script else ""
    policy = (
        f"default-src 'none'; img-src 'self' data:; style-src {_digest(css)}; "
        f"script-src {_digest(js) if script else chr(39) + 'none' + chr(39)}; base-uri 'none'; form-action 'none'"
    )
    head = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="generator" content="wssbench leaderboard">',
        f'<meta name="description" content="{escape(description, quote=True)}">' if description else "",
        f"<title>{escape(title)}</title>",
        f"<style>{css}</style>",
        "</head>",
        "<body>",
    ]
    tail = [f"<script>{js}</script>" if script else "", "</body>", "</html>", ""]
    return "\n".join(line for line in (*head, body, *tail) if line)
