"""A QR payload as an image, for demos and printed test cards (segno: pure Python, no
imaging library needed, PNG and SVG)."""

from __future__ import annotations

from pathlib import Path

import segno

# Level M restores ~15% of the symbol: enough for glare on a phone screen or a worn
# printout, and a version-1 payload (145 characters) still fits version 6 (41 x 41 modules).
ERROR_CORRECTION = "m"
# ISO/IEC 18004 asks for a quiet zone of 4 modules around the symbol.
QUIET_ZONE_MODULES = 4
# 8 pixels a module: a 49-module image is 392 px, sharp on screen and in print at 300 dpi
# (about 33 mm across).
MODULE_PIXELS = 8


def render_qr(payload: bytes, out: Path, module_pixels: int = MODULE_PIXELS) -> segno.QRCode:
    """Write `payload` (the QR text) as a QR image to `out` (.png or .svg by its suffix)."""
    code = segno.make(
        payload.decode("ascii"), error=ERROR_CORRECTION, boost_error=False, micro=False
    )
    code.save(str(out), scale=module_pixels, border=QUIET_ZONE_MODULES)
    return code
