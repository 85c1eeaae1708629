"""A policy preview drawn as an SVG timeline on the server (no script, no CDN).

One row per step, in ladder order; the horizontal axis is the day counted from the first
statement; each step's mark says what happens to it (sent, skipped, suppressed, waiting for a
person, written off) by its shape as well as its colour, so that the chart reads in grey too.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from services.policy import PreviewEntry

WIDTH, ROW, TOP, LEFT, RIGHT = 900, 30, 34, 150, 250

MARKS: dict[str, str] = {
    "sent": "filled circle",
    "skipped": "open circle",
    "suppressed": "open square",
    "waiting": "diamond",
    "written_off": "cross",
}


def _mark(outcome: str, x: float, y: float) -> str:
    if outcome == "sent":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" class="mark sent"/>'
    if outcome == "suppressed":
        return f'<rect x="{x - 6:.1f}" y="{y - 6:.1f}" width="12" height="12" class="mark open"/>'
    if outcome == "waiting":
        pts = f"{x:.1f},{y - 8:.1f} {x + 8:.1f},{y:.1f} {x:.1f},{y + 8:.1f} {x - 8:.1f},{y:.1f}"
        return f'<polygon points="{pts}" class="mark waiting"/>'
    if outcome == "written_off":
        return (
            f'<path d="M{x - 6:.1f},{y - 6:.1f} L{x + 6:.1f},{y + 6:.1f} M{x + 6:.1f},{y - 6:.1f}'
            f' L{x - 6:.1f},{y + 6:.1f}" class="mark cross"/>'
        )
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" class="mark open"/>'


def timeline_chart(title: str, entries: list[PreviewEntry]) -> Markup:
    """The steps of a previewed balance on a day axis, one row each, labelled."""
    last = max([e.day for e in entries] + [30])
    span = ((last + 29) // 30) * 30
    height = TOP + ROW * max(len(entries), 1) + 30
    inner = WIDTH - LEFT - RIGHT

    def x_of(day: int) -> float:
        return LEFT + inner * max(day, 0) / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img"'
        f' aria-labelledby="timeline-title" class="chart timeline">',
        f'<title id="timeline-title">{escape(title)}</title>',
    ]
    axis_y = height - 26
    parts.append(
        f'<line x1="{LEFT}" y1="{axis_y}" x2="{LEFT + inner}" y2="{axis_y}" class="axis"/>'
    )
    for day in range(0, span + 1, 30):
        x = x_of(day)
        parts += [
            f'<line x1="{x:.1f}" y1="{TOP - 12}" x2="{x:.1f}" y2="{axis_y}" class="grid"/>',
            f'<text x="{x:.1f}" y="{axis_y + 18}" text-anchor="middle">day {day}</text>',
        ]
    for i, entry in enumerate(entries):
        y = TOP + ROW * i
        x = x_of(entry.day)
        step = entry.step or "write-off"
        what = " · ".join(
            p
            for p in (f"day {entry.day}", entry.channel or "", entry.outcome.replace("_", " "))
            if p
        )
        parts += [
            f'<text x="{LEFT - 10}" y="{y + 4}" text-anchor="end">{escape(step)}</text>',
            f'<line x1="{LEFT}" y1="{y}" x2="{x:.1f}" y2="{y}" class="lane"/>',
            _mark(entry.outcome, x, y),
            f'<text x="{x + 12:.1f}" y="{y + 4}">{escape(what)}</text>',
        ]
    parts.append("</svg>")
    return Markup("".join(parts))
