"""Cumulative collection per arm over the days since entry: SVG for the console and the CLI,
PNG (matplotlib) for the CLI report."""

from __future__ import annotations

from pathlib import Path

from markupsafe import escape

from services.experiments.service import ExperimentReport

WIDTH, HEIGHT, PAD, LEFT, BOTTOM = 640, 300, 20, 56, 40
COLOURS = ("#1f5f8b", "#c0392b", "#27ae60", "#8e44ad", "#d35400", "#7f8c8d")


def _title(report: ExperimentReport) -> str:
    return f"{report.experiment.key}: mean collected per balance by day since entry"


def svg(report: ExperimentReport) -> str:
    """A line per arm: dollars collected per balance by day 0..90 after entering, over the
    balances observed that long. No script, no external resource."""
    curves = [(a.name, a.curve) for a in report.arms]
    days = max((len(c) for _, c in curves), default=0)
    top = max([v for _, c in curves for v in c] + [1.0])
    inner_w, inner_h = WIDTH - LEFT - PAD, HEIGHT - PAD - BOTTOM
    span = max(days - 1, 1)

    def x(day: int) -> float:
        return LEFT + inner_w * day / span

    def y(value: float) -> float:
        return PAD + inner_h * (1 - value / top)

    title = _title(report)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{LEFT}" y1="{PAD + inner_h}" x2="{WIDTH - PAD}" y2="{PAD + inner_h}" '
        'stroke="#444" class="axis"/>',
        f'<line x1="{LEFT}" y1="{PAD}" x2="{LEFT}" y2="{PAD + inner_h}" stroke="#444" '
        'class="axis"/>',
        f'<text x="{LEFT - 6}" y="{PAD + 4}" text-anchor="end" font-size="11">${top:,.0f}</text>',
        f'<text x="{LEFT - 6}" y="{PAD + inner_h}" text-anchor="end" font-size="11">$0</text>',
        f'<text x="{LEFT + inner_w / 2:.0f}" y="{HEIGHT - 8}" text-anchor="middle" '
        'font-size="11">days since entering the experiment</text>',
    ]
    for tick in range(0, days, 30):
        parts.append(
            f'<text x="{x(tick):.1f}" y="{PAD + inner_h + 14}" text-anchor="middle" '
            f'font-size="10">{tick}</text>'
        )
    for i, (name, curve) in enumerate(curves):
        colour = COLOURS[i % len(COLOURS)]
        if curve:
            points = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in enumerate(curve))
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}" '
                f'data-arm="{escape(name)}"/>'
            )
        parts.append(
            f'<text x="{LEFT + 8}" y="{PAD + 14 + 14 * i}" fill="{colour}" font-size="12">'
            f"{escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def png(report: ExperimentReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for arm in report.arms:
        label = f"{arm.name} ({arm.policy}, {arm.balances:,} balances)"
        ax.plot(range(len(arm.curve)), arm.curve, label=label)
    ax.set_title(_title(report))
    ax.set_xlabel("days since entering the experiment")
    ax.set_ylabel("collected per balance, cumulative (USD)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("${x:,.2f}"))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(report: ExperimentReport, path: Path) -> Path:
    """The chart in the format the file's suffix names (.svg or .png)."""
    if path.suffix.lower() == ".svg":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg(report), encoding="utf-8")
        return path
    return png(report, path)
