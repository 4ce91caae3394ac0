"""Charts as inline SVG, drawn on the server by pygal, fit for the strict CSP.

pygal puts a `<script>` (its tooltip config) and a `<style>` in every SVG. The CSP forbids
both inline, so each chart's tree is cleaned: scripts, styles, comments, tooltips and `style`
attributes go; the CSS, the same for every chart once pygal's per-chart id is replaced by the
`.pygal-chart` class every chart has, is served once as a stylesheet (`chart_css()`,
/static/charts.css). No JavaScript, no external URL (only the SVG namespace names).
Text in the charts (scene names, reasons) is escaped by the XML serializer.
"""

from __future__ import annotations

import functools
import html
import logging
import re
import xml.etree.ElementTree as ET
from typing import Any, Callable

import pygal
from pygal.style import Style

_LOGGER = logging.getLogger(__name__)

SVG_NS = "http://www.w3.org/2000/svg"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")

STYLE = Style(
    background="#ffffff", plot_background="#ffffff", foreground="#1f2933",
    foreground_strong="#111827", foreground_subtle="#6b7280",
    font_family='"Liberation Sans", Arial, Helvetica, sans-serif',
    title_font_size=17, label_font_size=14, major_label_font_size=14, legend_font_size=14,
    value_font_size=14, value_label_font_size=14,
    colors=("#2563eb", "#dc2626", "#16a34a", "#f59e0b", "#7c3aed", "#0891b2", "#db2777",
            "#65a30d", "#ea580c", "#4b5563", "#0d9488", "#9333ea"),
)
_CHART_ID = re.compile(r"#chart-[0-9a-fA-F-]+")
_MAX_SERIES = len(STYLE.colors)


def _base(kind: Callable[..., Any], title: str, **extra: Any):
    options = dict(style=STYLE, js=[], disable_xml_declaration=True, explicit_size=False,
                   width=600, height=320, legend_at_bottom=True, legend_box_size=13,
                   print_values=True, tooltip_border_radius=0, margin=16,
                   truncate_label=-1, truncate_legend=-1, show_y_guides=True)
    options.update(extra)
    chart = kind(**options)
    chart.title = title
    return chart


@functools.cache
def chart_css() -> str:
    """The one stylesheet for every chart (pygal's, with its per-chart id made a class)."""
    chart = _base(pygal.Bar, "css")
    for i in range(_MAX_SERIES):
        chart.add(str(i), [1])
    tree = chart.render_tree()
    texts = [el.text or "" for el in tree.iter() if _local(el.tag) == "style"]
    css = "\n".join(html.unescape(t) for t in texts)  # the serializer escaped '>' in selectors
    return _CHART_ID.sub(".pygal-chart", css) + "\n"


def _counts_axis(values: list[int]) -> list[int]:
    """Whole-number ticks for an axis of counts (pygal would draw 0.2, 0.4...)."""
    top = max([v for v in values if v] or [1])
    step = max(1, -(-top // 6))
    return list(range(0, top + step, step))


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def to_svg(chart, label: str) -> str:
    """The chart as clean inline SVG markup (a `role=img` with `label` for screen readers)."""
    root = chart.render_tree()
    _clean(root)
    root.attrib.pop("id", None)
    root.set("role", "img")
    root.set("aria-label", label)
    root.set("class", "pygal-chart")
    return ET.tostring(root, encoding="unicode", method="xml")


def _clean(node) -> None:
    for child in list(node):
        tag = _local(child.tag)
        classes = (child.get("class") or "").split() if tag else []
        if not tag or tag in ("script", "style", "desc") or "tooltip" in classes:
            node.remove(child)  # comments (no str tag), scripts, styles, pygal's tooltip
            continue
        child.attrib.pop("style", None)
        for name in list(child.attrib):
            if name.startswith("on"):  # never an event handler (pygal adds none; be sure)
                del child.attrib[name]
        _clean(child)


# ---- the admin page's charts, from ivr.store.stats.compute's figures -------------------

def containment(s: dict[str, Any]) -> str:
    served = s["ended"] - s["abandoned"]
    title = (f"Containment: {s['containment'] * 100:.1f}% of {served} calls"
             if s["containment"] is not None else "Containment: no ended calls")
    chart = _base(pygal.Pie, title, inner_radius=0.55, print_values=False, height=300)
    later_hangups = s["contained"] - s["resolved"]
    for name, value in (("resolved by the IVR", s["resolved"]),
                        ("caller hung up later", later_hangups),
                        ("transferred to a human", s["transferred"]),
                        (f"abandoned (< {s['abandon_seconds']:g} s)", s["abandoned"])):
        chart.add(f"{name}: {value}", [{"value": value, "label": str(value)}] if value else [])
    return to_svg(chart, title)


def transfer_reasons(s: dict[str, Any]) -> str:
    title = f"Transfers by reason ({s['transferred']} calls)"
    chart = _base(pygal.HorizontalBar, title, show_legend=False,
                  height=max(200, 60 + 28 * len(s["transfer_reasons"])))
    rows = list(reversed(s["transfer_reasons"][:15]))
    chart.x_labels = [r["reason"] for r in rows]
    chart.y_labels = _counts_axis([r["count"] for r in rows])
    chart.add("calls", [r["count"] for r in rows])
    return to_svg(chart, title)


def handle_time(s: dict[str, Any]) -> str:
    aht = s["average_handle_time"]
    title = "Average handle time: " + (f"{aht:.1f} s" if aht is not None else "no calls")
    by = s.get("handle_time_by_outcome") or {}
    chart = _base(pygal.HorizontalBar, title, show_legend=False, height=max(200, 80 + 34 * len(by)),
                  value_formatter=lambda v: f"{v:.1f} s")
    chart.x_labels = list(by)
    chart.add("seconds", list(by.values()))
    return to_svg(chart, title)


def steps(s: dict[str, Any], top: int = 10) -> str:
    """Counts, not rates: a step re-prompted three times in one entry has a rate of 300%,
    which reads badly on a chart (the table under it has the rates)."""
    rows = [r for r in s["steps"] if r["no_input"] or r["no_match"]][:top]
    title = f"No-input and no-match per step (top {top})"
    chart = _base(pygal.HorizontalBar, title, height=max(220, 100 + 44 * len(rows)))
    rows = list(reversed(rows))
    chart.x_labels = [f"{r['scene']}.{r['step']}" for r in rows]
    chart.y_labels = _counts_axis([r["no_input"] for r in rows] + [r["no_match"] for r in rows])
    chart.add("no-input", [r["no_input"] or None for r in rows])
    chart.add("no-match", [r["no_match"] or None for r in rows])
    return to_svg(chart, title)


def funnels(s: dict[str, Any], top: int = 12) -> str:
    rows = list(reversed(s["funnels"][:top]))
    title = "Scene funnels: how calls that entered each scene went on"
    chart = _base(pygal.HorizontalStackedBar, title, print_values=False,
                  height=max(240, 110 + 30 * len(rows)))
    chart.x_labels = [r["scene"] for r in rows]
    chart.y_labels = _counts_axis([r["entered"] for r in rows])
    chart.add("resolved here", [r["resolved"] for r in rows])
    chart.add("transferred here", [r["transferred"] for r in rows])
    chart.add("escalated from here", [r["escalated"] for r in rows])
    chart.add("dropped here", [r["dropped"] for r in rows])
    chart.add("went on", [max(0, r["passed_on"] - r["escalated"]) for r in rows])
    return to_svg(chart, title)


def proactive(s: dict[str, Any]) -> str:
    p = s["proactive"]
    title = (f"Proactive questions: {p['asked']} asked, acceptance "
             + ("-" if p["acceptance_rate"] is None else f"{p['acceptance_rate'] * 100:.0f}%")
             + ", precision " + ("-" if p["precision"] is None else f"{p['precision'] * 100:.0f}%"))
    rows = [{"prediction": "all", **p}] + list(p["by_prediction"]) if p["asked"] else []
    chart = _base(pygal.Bar, title, value_formatter=lambda v: f"{v * 100:.0f}%", range=(0, 1))
    chart.x_labels = [r["prediction"] for r in rows]
    chart.add("acceptance", [r["acceptance_rate"] for r in rows])
    chart.add("precision", [r["precision"] for r in rows])
    return to_svg(chart, title)


def per_day(s: dict[str, Any]) -> str:
    days = s["calls_per_day"][-31:]
    title = f"Calls per day ({s['timezone']})"
    chart = _base(pygal.Bar, title, show_legend=False, x_label_rotation=-45 if len(days) > 7 else 0,
                  print_values=len(days) <= 14)
    chart.x_labels = [d["day"] for d in days]
    chart.y_labels = _counts_axis([d["calls"] for d in days])
    chart.add("calls", [d["calls"] for d in days])
    return to_svg(chart, title)


def per_hour(s: dict[str, Any]) -> str:
    title = f"Calls per hour of the day ({s['timezone']})"
    chart = _base(pygal.Bar, title, show_legend=False, print_values=False)
    chart.x_labels = [f"{h['hour']:02d}" for h in s["calls_per_hour"]]
    chart.x_labels_major_every = 3
    chart.show_minor_x_labels = False
    chart.y_labels = _counts_axis([h["calls"] for h in s["calls_per_hour"]])
    chart.add("calls", [h["calls"] for h in s["calls_per_hour"]])
    return to_svg(chart, title)
