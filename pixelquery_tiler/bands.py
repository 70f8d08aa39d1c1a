"""Which bands a read returns: a band list, titiler's ``bidx``, and band-math expressions over band names.

Band names are STAC common names (``red``, ``nir``...), so titiler's ``expression`` accepts
``(nir-red)/(nir+red)``; rio-tiler's positional ``b1``, ``b2``... still work and index the reader's band list.
Expressions are rewritten onto the stored names before reading (so only the bands they use are read) and
applied to the image afterwards with rio-tiler's evaluator.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

from rio_tiler.errors import InvalidExpression
from rio_tiler.expression import get_expression_blocks, validate_expression
from rio_tiler.models import ImageData
from rio_tiler.types import Indexes

from .errors import InvalidParameter

#: band-math size limits: rewriting and evaluating an expression recurse over its syntax tree, so a long chain
#: (``b1+b1+...``) or deep nesting must be refused before it exhausts the stack (real indices have < 50 nodes)
MAX_EXPRESSION_NODES = 512
MAX_EXPRESSION_DEPTH = 48
#: most ``;``-separated expressions (output bands) in one request
MAX_EXPRESSION_BANDS = 64

_POSITIONAL_BAND = re.compile(r"^b(\d+)$")


def split_bands(value: str | Sequence[str] | None) -> list[str] | None:
    """``"red, nir"`` or ``["red", "nir"]`` -> ``["red", "nir"]``; ``None`` stays ``None``."""
    if value is None:
        return None
    names = [b.strip() for b in value.split(",")] if isinstance(value, str) else [str(b).strip() for b in value]
    names = [b for b in names if b]
    if not names:
        raise InvalidParameter("bands must name at least one band")
    return names


def select_bands(
    band_names: Sequence[str], available: Sequence[str], indexes: Indexes | None, expression: str | None
) -> tuple[list[str], str | None]:
    """Band names to read and the expression rewritten onto them (``b1`` -> the reader's first band).

    ``band_names``: the reader's band list (what ``bN`` and ``bidx`` index); ``available``: every band of the view.
    """
    if expression:
        return expression_bands(expression, band_names, available)
    if indexes is None:
        return list(band_names), None
    idx = [indexes] if isinstance(indexes, int) else list(indexes)
    bad = [i for i in idx if not 1 <= i <= len(band_names)]
    if bad:
        raise InvalidParameter(f"bidx {bad} out of range: this view has {len(band_names)} band(s) {list(band_names)}")
    return [band_names[i - 1] for i in idx], None


def expression_bands(expression: str, band_names: Sequence[str], available: Sequence[str]) -> tuple[list[str], str]:
    """Bands an expression uses, and the expression with positional ``bN`` replaced by names.

    Names are matched case-insensitively (rio-tiler lower-cases expressions before evaluating them).
    """
    validate_expression(expression)
    by_lower = {b.lower(): b for b in available}
    used: dict[str, None] = {}

    def resolve(name: str) -> str:
        key = name.lower()
        if key in by_lower:
            return by_lower[key]
        if m := _POSITIONAL_BAND.match(key):
            i = int(m.group(1))
            if 1 <= i <= len(band_names):
                return band_names[i - 1]
        raise InvalidExpression(f"unknown band {name!r} in expression; available: {list(available)}")

    blocks = []
    if len(parts := get_expression_blocks(expression)) > MAX_EXPRESSION_BANDS:
        raise InvalidExpression(f"at most {MAX_EXPRESSION_BANDS} expressions (output bands) in one request")
    for block in parts:
        tree = _parse(block)
        calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in calls:
                node.id = resolve(node.id).lower()
                used.setdefault(by_lower.get(node.id, node.id), None)
        blocks.append(ast.unparse(tree))
    if not used:
        raise InvalidExpression(f"expression {expression!r} uses no band")
    return list(used), ";".join(blocks)


def apply_expression(img: ImageData, expression: str) -> ImageData:
    """``img`` with ``expression`` (as ``select_bands`` rewrote it) evaluated over its bands."""
    img.band_names = [b.lower() for b in img.band_names]  # rio-tiler lower-cases expressions: match it
    return img.apply_expression(expression)


def _parse(block: str) -> ast.Expression:
    """One expression block's syntax tree, ``InvalidExpression`` if it does not parse or is over the limits."""
    try:
        tree = ast.parse(block, mode="eval")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        raise InvalidExpression(f"invalid expression block {block[:80]!r}") from None
    nodes = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:  # size limits, walked without recursion
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_EXPRESSION_NODES or depth > MAX_EXPRESSION_DEPTH:
            raise InvalidExpression(
                f"expression too large: at most {MAX_EXPRESSION_NODES} terms "
                f"and {MAX_EXPRESSION_DEPTH} levels of nesting"
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree
