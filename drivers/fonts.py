"""The CJK font for pictures of Chinese text: raster printing and the virtual printer's PNGs.

The set-up installs fonts-wqy-microhei (Makefile); any of the usual CJK fonts found is used.
"""

from __future__ import annotations

import glob
import logging
import os

log = logging.getLogger("drivers.fonts")

_FONT_GLOBS = [
    "/usr/share/fonts/**/NotoSansCJK*", "/usr/share/fonts/**/NotoSansMonoCJK*", "/usr/share/fonts/**/NotoSerifCJK*",
    "/usr/share/fonts/**/wqy*", "/usr/share/fonts/**/DroidSansFallback*", "/usr/share/fonts/**/SourceHan*",
    "/usr/share/fonts/**/uming*", "/usr/share/fonts/**/ukai*", "/usr/local/share/fonts/**/*CJK*",
    "/usr/share/fonts/**/simsun*", "/usr/share/fonts/**/msyh*",
]
_font_path: str | None | bool = False  # False: not looked up yet


def find_cjk_font() -> str | None:
    global _font_path
    if _font_path is False:
        _font_path = None
        for pattern in _FONT_GLOBS:
            # the globs also match folders (/usr/share/fonts/truetype/wqy): only files are fonts
            hits = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            if hits:
                _font_path = hits[0]
                break
        if _font_path is None:
            log.warning("no CJK font found: Chinese renders as boxes in PNGs (install fonts-wqy-microhei: make system-packages)")
    return _font_path  # type: ignore[return-value]
