"""A PNG encoder with numpy + libdeflate: the fast path for 8/16-bit map tiles.

GDAL's PNG driver (what titiler uses) spends most of a tile's time in adaptive filtering at zlib level 6;
for 256 px tiles this encoder is several times faster and decodes to identical pixels. The PNG container
is a few lines of framing; the compression (most of the time) is libdeflate through the ``deflate``
bindings, which at level 1 is ~3.5x faster than zlib at level 2 for the same size on real tiles
(``benchmarks/README.md``, "PNG encoder"). Both release the GIL while compressing.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from deflate import zlib_compress

#: libdeflate level (0-12): 1 is as small as zlib's level 2 on map tiles and fastest (``Settings.png_zlevel``)
PNG_ZLEVEL = 1


def _png_chunk(tag: bytes, body: bytes | bytearray) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(tag)))


def encode_png(data: np.ndarray, alpha: np.ndarray | None, level: int = PNG_ZLEVEL) -> bytes:
    """8- or 16-bit PNG (gray, gray+alpha, RGB or RGBA), filter type 0 (none).

    ``alpha`` must have ``data``'s dtype (255 or 65535 = valid); ``level`` is libdeflate's (0-12).
    """
    planes = np.concatenate([data, alpha[None]]) if alpha is not None else data
    count, height, width = planes.shape
    depth = planes.dtype.itemsize * 8
    pixels = planes.transpose(1, 2, 0).astype(">u2" if depth == 16 else np.uint8, copy=False)
    raw = np.zeros((height, width * count * (depth // 8) + 1), np.uint8)  # column 0: filter type per row
    raw[:, 1:] = pixels.reshape(height, -1).view(np.uint8)
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[count]
    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib_compress(raw.data, level)),
            _png_chunk(b"IEND", b""),
        )
    )
