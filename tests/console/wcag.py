"""WCAG 2.x contrast of the console's text against its backgrounds, computed from its CSS.

The stylesheet is parsed with tinycss2 (custom properties resolved from ``:root``). Each rule
gives text/background pairs:

- a rule that sets ``color`` and a solid ``background``: that pair;
- ``color`` without a background of its own: against the surfaces it is drawn on (the page
  background and the panels; inside a dark ancestor such as the header, that ancestor's);
- a solid ``background`` without ``color`` (a notice, a table head, a hover state): every text
  colour that inherits onto it (body text, links, muted text; the ancestor's inside one).

Decorative shapes (chart bars, legend swatches, progress segments: ``DECORATIVE``) carry no
text and are left out. Pure: CSS text in, pairs out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import tinycss2
import tinycss2.color3
from tinycss2.ast import FunctionBlock, Node, QualifiedRule

#: WCAG 2.x AA for normal-size text (SC 1.4.3)
AA_NORMAL = 4.5
#: selectors drawing shapes, not text
DECORATIVE = re.compile(r"\.(swatch|seg|track|bar|line-done|line-failed)\b")
#: selectors whose text sits on a dark ancestor, by that ancestor's selector
DARK_CONTEXTS: Mapping[str, str] = {
    ".top": ".top",
    ".brand": ".top",
    ".who": ".top",
    ".linklike": ".top",
}

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Pair:
    selector: str
    text: RGB
    background: RGB

    @property
    def ratio(self) -> float:
        return contrast(self.text, self.background)

    def __str__(self) -> str:
        return (
            f"{self.selector}: {hexed(self.text)} on {hexed(self.background)} = {self.ratio:.2f}:1"
        )


def hexed(c: RGB) -> str:
    return "#" + "".join(f"{round(v * 255):02x}" for v in c)


def _linear(channel: float) -> float:
    return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4


def luminance(c: RGB) -> float:
    """Relative luminance (WCAG 2.x definition, sRGB)."""
    r, g, b = (_linear(v) for v in c)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: RGB, b: RGB) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@dataclass(frozen=True)
class Rule:
    selector: str
    decls: dict[str, list[Node]]


def _rules(nodes: list[Node]) -> Iterator[Rule]:
    for node in nodes:
        if isinstance(node, QualifiedRule):
            decls = tinycss2.parse_declaration_list(
                node.content, skip_comments=True, skip_whitespace=True
            )
            yield Rule(
                tinycss2.serialize(node.prelude).strip(),
                {d.name: [t for t in d.value if t.type != "whitespace"] for d in decls
                 if d.type == "declaration"},
            )  # fmt: skip
        elif node.type == "at-rule" and node.content is not None:  # @media: its own rules
            yield from _rules(
                tinycss2.parse_rule_list(node.content, skip_comments=True, skip_whitespace=True)
            )


def _colour(tokens: list[Node], variables: Mapping[str, list[Node]]) -> RGB | None:
    """The first solid colour of a value (``var()`` resolved); None: none, or not opaque."""
    for token in tokens:
        if isinstance(token, FunctionBlock) and token.lower_name == "var":
            name = tinycss2.serialize(token.arguments).strip()
            return _colour(variables.get(name, []), variables)
        parsed = tinycss2.color3.parse_color(token)
        if parsed is not None and not isinstance(parsed, str):
            return (parsed.red, parsed.green, parsed.blue) if parsed.alpha == 1 else None
    return None


@dataclass(frozen=True)
class Sheet:
    rules: list[Rule]
    variables: dict[str, list[Node]]

    @classmethod
    def parse(cls, css: str) -> Sheet:
        nodes = tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True)
        rules = list(_rules(nodes))
        variables = {k: v for r in rules if r.selector == ":root" for k, v in r.decls.items()}
        return cls(rules, variables)

    def colour(self, rule: Rule, *props: str) -> RGB | None:
        for prop in props:
            if prop in rule.decls:
                return _colour(rule.decls[prop], self.variables)
        return None

    def rule(self, selector: str) -> Rule:
        return next(r for r in self.rules if selector in _selectors(r.selector))


def _selectors(prelude: str) -> list[str]:
    return [s.strip() for s in prelude.split(",")]


def _context(selector: str) -> str | None:
    head = selector.split()[0].split(":")[0].split("[")[0]
    for prefix, ancestor in DARK_CONTEXTS.items():
        if head == prefix or head.startswith(prefix + "."):
            return ancestor
    return None


def pairs(css: str) -> list[Pair]:
    """Every text/background pair the stylesheet draws (see the module's docstring)."""
    sheet = Sheet.parse(css)
    body, link = sheet.rule("body"), sheet.rule("a")
    fg = sheet.colour(body, "color")
    page = sheet.colour(body, "background", "background-color")
    panel = _colour(sheet.variables.get("--panel", []), sheet.variables)
    muted = _colour(sheet.variables.get("--muted", []), sheet.variables)
    surfaces = [c for c in (page, panel) if c is not None]
    inherited = [c for c in (fg, sheet.colour(link, "color"), muted) if c is not None]
    out: list[Pair] = []
    for rule in sheet.rules:
        text = sheet.colour(rule, "color")
        background = sheet.colour(rule, "background", "background-color")
        for selector in _selectors(rule.selector):
            if DECORATIVE.search(selector) or selector in (":root", "body"):
                continue
            ancestor = _context(selector)
            if ancestor is not None and ancestor != selector:
                dark = sheet.rule(ancestor)
                behind = [sheet.colour(dark, "background", "background-color")]
                onto = [sheet.colour(dark, "color"), sheet.colour(sheet.rule(".top a"), "color")]
            else:
                behind, onto = list(surfaces), list(inherited)
            if text is not None and background is not None:
                out.append(Pair(selector, text, background))
            elif text is not None:
                out += [Pair(selector, text, b) for b in behind if b is not None]
            elif background is not None:
                out += [Pair(selector, t, background) for t in onto if t is not None]
    if fg is not None and page is not None:
        out.append(Pair("body", fg, page))
    return out


def failing(css: str, minimum: float = AA_NORMAL) -> list[Pair]:
    return [p for p in pairs(css) if p.ratio < minimum]
