"""HTML pages from small string.Template files in templates/. Every value is escaped with
html.escape unless it is `Markup` (markup this package built itself, already escaped)."""

from __future__ import annotations

import functools
import html
import logging
from pathlib import Path
from string import Template
from typing import Any

from aiohttp import web

_LOGGER = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"


class Markup(str):
    """Markup that is already safe (built from escaped parts); inserted as is."""


def esc(value: Any) -> str:
    return value if isinstance(value, Markup) else html.escape("" if value is None else str(value))


@functools.cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def render(template: str, /, **values: Any) -> Markup:
    """templates/NAME with $placeholders filled, each value escaped (a missing one is an error)."""
    return Markup(_template(template).substitute({k: esc(v) for k, v in values.items()}))


def page(title: str, body: Markup, *, status: int = 200, nav: Markup | str = "") -> web.Response:
    text = render("base.html", title=title, body=body, nav=nav)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
