"""Line charts drawn in the terminal with braille dots (2 x 4 dots per character cell).

`render_chart({"loss": (steps, values), ...}, width=72, height=16)` returns rich `Text` lines:
a y axis with the range, the plot, and an x axis labelled with steps. Each series has its own
colour; where two cross, the later one shows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

from rich.text import Text

BRAILLE_BASE = 0x2800
# dot bit for (x in 0..1, y in 0..3) inside one cell, y counted from the top
DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
COLOURS = ("cyan", "magenta", "yellow", "green", "blue", "red")
Series = tuple[Sequence[float], Sequence[float]]  # x (steps), y (values)


def _bounds(series: Mapping[str, Series]) -> tuple[float, float, float, float]:
    xs = [x for s in series.values() for x in s[0]]
    ys = [y for s in series.values() for y in s[1] if math.isfinite(y)]
    x_low, x_high = min(xs), max(xs)
    y_low, y_high = min(ys), max(ys)
    if x_high == x_low:
        x_high = x_low + 1
    if y_high == y_low:
        y_low, y_high = y_low - 0.5, y_high + 0.5
    return x_low, x_high, y_low, y_high


def _line(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    """Bresenham: every dot between two dots."""
    dots = []
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    error = dx + dy
    while True:
        dots.append((x0, y0))
        if x0 == x1 and y0 == y1:
            return dots
        twice = 2 * error
        if twice >= dy:
            error += dy
            x0 += sx
        if twice <= dx:
            error += dx
            y0 += sy


def _label(value: float) -> str:
    magnitude = abs(value)
    if magnitude != 0 and (magnitude >= 1e5 or magnitude < 1e-3):
        return f"{value:.2e}"
    return f"{value:.4g}"


class _Canvas:
    """A grid of braille cells, each with the colour of the last series drawn through it."""

    def __init__(self, columns: int, rows: int, bounds: tuple[float, float, float, float]):
        self.columns, self.rows, self.bounds = columns, rows, bounds
        self.cells = [[0] * columns for _ in range(rows)]
        self.colours = [[""] * columns for _ in range(rows)]

    def dot(self, x: float, y: float) -> tuple[int, int]:
        x_low, x_high, y_low, y_high = self.bounds
        column = round((x - x_low) / (x_high - x_low) * (self.columns * 2 - 1))
        row = round((y_high - y) / (y_high - y_low) * (self.rows * 4 - 1))
        return column, row

    def draw(self, xs: Sequence[float], ys: Sequence[float], colour: str) -> None:
        points = [self.dot(x, y) for x, y in zip(xs, ys, strict=False) if math.isfinite(y)]
        path = points[:1] + [d for a, b in itertools.pairwise(points) for d in _line(*a, *b)]
        for column, row in path:
            self.cells[row // 4][column // 2] |= DOT_BITS[column % 2][row % 4]
            self.colours[row // 4][column // 2] = colour

    def row_text(self, row: int) -> Text:
        text = Text()
        for bits, colour in zip(self.cells[row], self.colours[row], strict=True):
            text.append(chr(BRAILLE_BASE + bits) if bits else " ", colour or None)
        return text


def render_chart(series: Mapping[str, Series], *, width: int = 72, height: int = 16) -> list[Text]:
    """The chart as lines of rich Text; empty when there is nothing to draw."""
    drawable = {name: s for name, s in series.items() if s[0] and s[1]}
    if not drawable:
        return []
    bounds = _bounds(drawable)
    x_low, x_high, y_low, y_high = bounds
    label_width = max(len(_label(y_high)), len(_label(y_low)))
    canvas = _Canvas(max(8, width - label_width - 3), height, bounds)
    for index, (xs, ys) in enumerate(drawable.values()):
        canvas.draw(xs, ys, COLOURS[index % len(COLOURS)])
    lines = []
    for row in range(height):
        label = _label(y_high) if row == 0 else _label(y_low) if row == height - 1 else ""
        axis = f"{label:>{label_width}} ┤" if label else " " * label_width + " │"
        lines.append(Text.assemble((axis, "dim")) + canvas.row_text(row))
    left, right = _label(x_low), _label(x_high)
    lines.append(Text(" " * label_width + " └" + "─" * canvas.columns, "dim"))
    lines.append(
        Text(" " * (label_width + 2) + left + right.rjust(canvas.columns - len(left)), "dim")
    )
    legend = Text(" " * (label_width + 2))
    for index, name in enumerate(drawable):
        legend.append("━━ ", COLOURS[index % len(COLOURS)])
        legend.append(f"{name}   ")
    return [*lines, legend]
