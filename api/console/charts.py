"""Charts drawn on the server as SVG (no script, no CDN): what the report pages embed."""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD, LABEL = 640, 260, 24, 40


def bar_chart(title: str, labels: list[str], values: list[int], shown: list[str]) -> Markup:
    """A vertical bar chart of ``values`` (non-negative), ``shown`` written above each bar."""
    top = max([*values, 1])
    inner_h = HEIGHT - PAD - LABEL
    slot = (WIDTH - 2 * PAD) / max(len(values), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD}" y1="{PAD + inner_h}" x2="{WIDTH - PAD}" y2="{PAD + inner_h}" '
        'class="axis"/>',
    ]
    for i, (label, value, text) in enumerate(zip(labels, values, shown, strict=True)):
        h = inner_h * value / top
        x = PAD + i * slot + slot * 0.15
        y = PAD + inner_h - h
        mid = PAD + i * slot + slot / 2
        width, above = slot * 0.7, max(y - 6, 12)
        parts += [
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" class="bar"/>',
            f'<text x="{mid:.1f}" y="{above:.1f}" text-anchor="middle">{escape(text)}</text>',
            f'<text x="{mid:.1f}" y="{HEIGHT - 12}" text-anchor="middle">{escape(label)}</text>',
        ]
    parts.append("</svg>")
    return Markup("".join(parts))
