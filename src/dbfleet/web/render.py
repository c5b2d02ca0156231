"""Rendering for the dashboard pages: one Jinja2 environment (autoescape on
for every template), the filters the templates use, and server-side
inline-SVG sparklines (no JavaScript, no chart library).

Templates live in ``dbfleet/web/templates`` (package data); a template whose
name starts with ``_`` is a fragment (htmx swaps it in, and the full page
includes it, so the page reads the same without JavaScript).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from dbfleet.output import human_bytes
from dbfleet.schedule.config import format_span


def age(seconds: float | None) -> str:
    """``3h12m`` for a span in seconds, ``never`` for ``None``."""
    if seconds is None:
        return "never"
    if seconds < 1:
        return "0s"
    return format_span(timedelta(seconds=int(seconds)))


def span(seconds: float | None) -> str:
    """A duration: ``0.42s``, ``12.3s``, ``4m3s``; ``-`` for ``None``."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return format_span(timedelta(seconds=int(seconds)))


def size(n: float | None) -> str:
    return "-" if n is None else human_bytes(n)


def percent(ratio: float | None) -> str:
    """``99.95%``; two decimals so a one-hour breach in 30 days still shows."""
    return "-" if ratio is None else f"{ratio * 100:.2f}%"


def when(value: str | datetime | None) -> str:
    """``2026-12-03 19:20 UTC`` for an ISO text or a datetime."""
    if value is None or value == "":
        return "-"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def sparkline(values: Sequence[float], label: str, *, width: int = 160, height: int = 32) -> Markup:
    """An inline SVG line of ``values`` (oldest first), scaled to its own
    min..max, with the newest point marked. ``role="img"`` and a ``<title>``
    give screen readers (and tooltips) the label with min, max and newest."""
    title = escape(label)
    if not values:
        return Markup(
            f'<svg class="spark" role="img" width="{width}" height="{height}" '
            f'aria-label="{title}: no data"><title>{title}: no data</title></svg>'
        )
    lo, hi = min(values), max(values)
    spread = (hi - lo) or 1.0
    step = (width - 4) / max(len(values) - 1, 1)
    points = [
        (2 + i * step, height - 2 - (v - lo) / spread * (height - 4)) for i, v in enumerate(values)
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    x, y = points[-1]
    newest = values[-1]
    summary = escape(f"{label}: {len(values)} points, min {lo:g}, max {hi:g}, newest {newest:g}")
    return Markup(
        f'<svg class="spark" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{summary}"><title>{summary}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{path}"/>'
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5"/></svg>'
    )


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("dbfleet.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=age, span=span, size=size, percent=percent, when=when)
    env.globals["sparkline"] = sparkline
    return env


ENV = environment()


def render(name: str, **context: Any) -> str:
    """Render template ``name`` with ``context``."""
    return ENV.get_template(name).render(**context)
