"""QR renderings of an ``HC1:`` string: alphanumeric mode, error correction Q (HCERT.md §6)."""

from __future__ import annotations

import io

import segno


def _qr(hc1: str) -> segno.QRCode:
    # boost_error=False: the level stays exactly Q, as the spec recommends, not "Q or better".
    return segno.make_qr(hc1, error="q", mode="alphanumeric", boost_error=False)


def render_png(hc1: str, scale: int = 4) -> bytes:
    buffer = io.BytesIO()
    _qr(hc1).save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


def render_svg(hc1: str, scale: int = 4) -> str:
    buffer = io.BytesIO()
    _qr(hc1).save(buffer, kind="svg", scale=scale, border=4, xmldecl=False)
    return buffer.getvalue().decode("utf-8")
