"""The size a JPEG XL file declares, read from its header without decoding it.

pillow-jxl-plugin decodes the whole image inside ``Image.open`` (a 7 kB file declaring
10000x10000 pixels spent 2.2 s there), so the pixel limit must be checked before Pillow
sees the file. The SizeHeader is the first field of a codestream (``FF 0A``), bare or inside
an ISO-BMFF container (``jxlc`` box, or the first ``jxlp`` box).
"""

from __future__ import annotations

import struct

CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
CODESTREAM = b"\xff\x0a"
_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}
_DISTRIBUTION = (9, 13, 18, 30)
MAX_BOXES = 64


def is_jxl(data: bytes) -> bool:
    return data.startswith(CODESTREAM) or data.startswith(CONTAINER)


class _Bits:
    """JPEG XL's bit order: least significant bit first within each byte."""

    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def read(self, count: int) -> int:
        value = 0
        for i in range(count):
            byte = self.position >> 3
            if byte >= len(self.data):
                raise ValueError("the JPEG XL header is cut short")
            value |= ((self.data[byte] >> (self.position & 7)) & 1) << i
            self.position += 1
        return value


def _codestream(data: bytes, need: int = 64) -> bytes:
    if data.startswith(CODESTREAM):
        return data[:need]
    if not data.startswith(CONTAINER):
        raise ValueError("not a JPEG XL file")
    position, found, boxes = len(CONTAINER), b"", 0
    while position + 8 <= len(data) and len(found) < need and boxes < MAX_BOXES:
        size, kind = struct.unpack(">I4s", data[position:position + 8])
        header = 8
        if size == 1:
            if position + 16 > len(data):
                break
            size, header = struct.unpack(">Q", data[position + 8:position + 16])[0], 16
        elif size == 0:
            size = len(data) - position
        if size < header:
            raise ValueError("a JPEG XL box of impossible size")
        body = data[position + header:position + size]
        if kind == b"jxlc":
            found += body
        elif kind == b"jxlp":
            found += body[4:]  # a 4-byte index precedes each partial codestream
        position += size
        boxes += 1
    if not found.startswith(CODESTREAM):
        raise ValueError("no JPEG XL codestream in the container")
    return found[:need]


def declared_size(data: bytes) -> tuple[int, int]:
    """(width, height) the header declares (before orientation; the pixel count is the same).
    ValueError when the header cannot be read."""
    bits = _Bits(_codestream(data)[2:])
    small = bits.read(1)
    height = (bits.read(5) + 1) * 8 if small else 1 + bits.read(_DISTRIBUTION[bits.read(2)])
    ratio = bits.read(3)
    if ratio:
        numerator, denominator = _RATIOS[ratio]
        width = height * numerator // denominator
    elif small:
        width = (bits.read(5) + 1) * 8
    else:
        width = 1 + bits.read(_DISTRIBUTION[bits.read(2)])
    return width, height
