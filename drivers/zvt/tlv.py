"""The BMP 06 TLV container: BER-TLV tags and lengths (ZVT spec, "TLV-container").

Tags with bit 0x20 in their first byte are constructed and hold more TLV;
lengths are BER: < 0x80 in one byte, 0x81 xx, or 0x82 xx xx.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ZvtProtocolError

MAX_DEPTH = 8  # nesting deeper than any ZVT container; bounds recursion on noise


@dataclass(frozen=True)
class Tlv:
    tag: int  # the tag bytes as one big-endian integer, e.g. 0x1F07
    value: bytes = b""
    children: tuple[Tlv, ...] = ()

    @property
    def constructed(self) -> bool:
        return is_constructed(self.tag)

    def find(self, tag: int) -> list[Tlv]:
        """Every element with `tag`, depth first, this one included."""
        found = [self] if self.tag == tag else []
        for child in self.children:
            found += child.find(tag)
        return found


def is_constructed(tag: int) -> bool:
    first = tag
    while first > 0xFF:
        first >>= 8
    return bool(first & 0x20)


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    if length <= 0xFF:
        return bytes((0x81, length))
    if length <= 0xFFFF:
        return bytes((0x82, length >> 8, length & 0xFF))
    raise ValueError(f"TLV length {length} exceeds 65535")


def encode_tag(tag: int) -> bytes:
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def encode_tlv(items: list[Tlv] | tuple[Tlv, ...]) -> bytes:
    out = bytearray()
    for item in items:
        value = encode_tlv(item.children) if item.constructed else item.value
        out += encode_tag(item.tag) + encode_length(len(value)) + value
    return bytes(out)


def decode_tlv(data: bytes, _depth: int = 0) -> tuple[Tlv, ...]:
    if _depth > MAX_DEPTH:
        raise ZvtProtocolError(f"TLV nested deeper than {MAX_DEPTH} levels")
    items: list[Tlv] = []
    pos = 0
    while pos < len(data):
        tag, pos = _read_tag(data, pos)
        length, pos = _read_length(data, pos, tag)
        if pos + length > len(data):
            raise ZvtProtocolError(
                f"TLV tag {tag:X}: length {length} runs past the container "
                f"({len(data) - pos} bytes left)"
            )
        value = bytes(data[pos : pos + length])
        pos += length
        if is_constructed(tag):
            items.append(Tlv(tag, b"", decode_tlv(value, _depth + 1)))
        else:
            items.append(Tlv(tag, value))
    return tuple(items)


def _read_tag(data: bytes, pos: int) -> tuple[int, int]:
    tag = data[pos]
    pos += 1
    if tag & 0x1F == 0x1F:
        # Multi-byte tag: following bytes continue while bit 0x80 is set.
        for _ in range(3):
            if pos >= len(data):
                raise ZvtProtocolError(f"TLV tag {tag:X} truncated")
            byte = data[pos]
            pos += 1
            tag = tag << 8 | byte
            if not byte & 0x80:
                break
        else:
            raise ZvtProtocolError(f"TLV tag {tag:X} longer than 4 bytes")
    return tag, pos


def _read_length(data: bytes, pos: int, tag: int) -> tuple[int, int]:
    if pos >= len(data):
        raise ZvtProtocolError(f"TLV tag {tag:X} has no length")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count not in (1, 2):
        raise ZvtProtocolError(f"TLV tag {tag:X}: length form {first:02X} is not 81 or 82")
    if pos + count > len(data):
        raise ZvtProtocolError(f"TLV tag {tag:X}: length bytes truncated")
    return int.from_bytes(data[pos : pos + count], "big"), pos + count
