"""Readable contrast, checked by a tool: every text/background pair the console's stylesheet
draws meets WCAG 2.x AA for normal text (4.5:1), computed from the CSS itself
(``tests/console/wcag.py``). Controls: the formula's known values, and deliberately bad pairs
added to the real stylesheet are caught."""

from __future__ import annotations

from importlib import resources

import pytest

from .wcag import AA_NORMAL, contrast, failing, pairs

CSS = resources.files("otaguard.server.console").joinpath("static/console.css").read_text("utf-8")
WHITE, BLACK = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)


def grey(v: int) -> tuple[float, float, float]:
    return (v / 255, v / 255, v / 255)


def test_contrast_formula_gives_wcags_known_values() -> None:
    assert contrast(BLACK, WHITE) == pytest.approx(21.0)
    assert contrast(WHITE, WHITE) == pytest.approx(1.0)
    assert contrast(grey(0x77), WHITE) == pytest.approx(4.48, abs=0.01)  # the classic near-miss
    assert contrast(grey(0x76), WHITE) == pytest.approx(4.54, abs=0.01)
    assert contrast(WHITE, grey(0x76)) == contrast(grey(0x76), WHITE)  # order does not matter


def test_every_text_colour_of_the_console_is_readable_on_its_background() -> None:
    found = pairs(CSS)
    assert len(found) > 80  # the badges, buttons, header, notices, tables... are all checked
    selectors = {p.selector for p in found}
    for expected in (".b-critical", ".b-paused", ".b-phase-current", ".top nav a:hover", "a"):
        assert expected in selectors, expected
    assert [str(p) for p in failing(CSS)] == []
    assert min(p.ratio for p in found) >= AA_NORMAL


@pytest.mark.parametrize(
    ("bad", "caught"),
    [
        (".oops { color: #777; background: #fff; }", ".oops"),  # both set in the rule
        (".oops { color: #9aa3ad; }", ".oops"),  # on the page's own surfaces
        (".notice2 { background: #5b6470; }", ".notice2"),  # body text inheriting onto it
        (".top .oops { color: #2a3f5a; }", ".top .oops"),  # inside the dark header
        ("@media print { .oops { color: var(--line); } }", ".oops"),  # via a custom property
    ],
)
def test_a_deliberately_bad_pair_is_caught(bad: str, caught: str) -> None:
    found = {p.selector for p in failing(CSS + "\n" + bad)}
    assert found == {caught}


def test_decorative_shapes_are_not_taken_for_text() -> None:
    # a light legend swatch carries no text: not a failure (control: the same colour as text is)
    assert failing(CSS + "\n.swatch.s-new { background: #f0f0f0; }") == []
    assert failing(CSS + "\n.label-new { color: #f0f0f0; }")
