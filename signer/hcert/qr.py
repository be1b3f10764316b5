"""QR renderings of an ``HC1:`` string: alphanumeric mode, error correction Q (HCERT.md §6).

A QR code costs tens of milliseconds of pure Python (segno tries all eight masks; ~30–40 ms for
a typical HCERT on the benchmark machine, whatever the scale), about 400 times an HSM signature,
so it never runs on a worker's HSM thread: the front renders them in a process pool of its own
(``signer.front.qr``) after the chunks come back signed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import segno


def _qr(hc1: str) -> segno.QRCode:
    # boost_error=False: the level stays exactly Q, as the spec recommends, not "Q or better".
    return segno.make_qr(hc1, error="q", mode="alphanumeric", boost_error=False)


def render(hc1: str, png: bool, svg: bool, scale: int = 4) -> tuple[bytes | None, str | None]:
    """The PNG and/or SVG of one code, made once for both."""
    code = _qr(hc1)
    png_bytes = svg_text = None
    if png:
        buffer = io.BytesIO()
        code.save(buffer, kind="png", scale=scale, border=4)
        png_bytes = buffer.getvalue()
    if svg:
        buffer = io.BytesIO()
        code.save(buffer, kind="svg", scale=scale, border=4, xmldecl=False)
        svg_text = buffer.getvalue().decode("utf-8")
    return png_bytes, svg_text


def render_many(
    hc1s: Sequence[str], png: bool, svg: bool, scale: int
) -> list[tuple[bytes | None, str | None]]:
    """:func:`render` for each string: one call per job of the front's QR pool."""
    return [render(hc1, png, svg, scale) for hc1 in hc1s]


def render_png(hc1: str, scale: int = 4) -> bytes:
    png, _ = render(hc1, True, False, scale)
    assert png is not None
    return png


def render_svg(hc1: str, scale: int = 4) -> str:
    _, svg = render(hc1, False, True, scale)
    assert svg is not None
    return svg
