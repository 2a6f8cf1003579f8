"""How many fields a QPACK-encoded field section holds, and a bound on its decoded size.

A QPACK bomb is a small encoded section whose field lines all reference one large dynamic
table entry: every 1-byte reference decodes to up to the table capacity, so 64 KiB encoded can
decode to 256 MiB. pylsqpack has no decoded-size limit, so ``section_bounds`` walks the field
line representations (RFC 9204 section 4.5) WITHOUT the dynamic table: it counts the lines
exactly and bounds each one's decoded size (a dynamic reference by the table capacity, a static
one by the largest static entry, a literal by its length, Huffman-expanded at most 8/5). The
adapter refuses a section over its limits before decoding it; QPACK stays in step because the
decoder then cancels the stream (RFC 9204 section 4.4.2) instead of decoding it.
"""

from __future__ import annotations

__all__ = ["section_bounds"]

_STATIC_ENTRY_MAX = 160  # the largest RFC 9204 Appendix A entry is under 128 bytes + 32


def _integer(data: bytes, pos: int, prefix: int) -> tuple[int, int]:
    """An RFC 7541 section 5.1 integer with a ``prefix``-bit prefix at ``pos``; (value, next)."""
    if pos >= len(data):
        raise ValueError("truncated")
    mask = (1 << prefix) - 1
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        if pos >= len(data) or shift > 62:
            raise ValueError("truncated or oversized integer")
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _string(data: bytes, pos: int, prefix: int) -> tuple[int, int]:
    """A string literal whose H bit sits just above a ``prefix``-bit length; (bound, next)."""
    if pos >= len(data):
        raise ValueError("truncated")
    huffman = data[pos] & (1 << prefix)
    length, pos = _integer(data, pos, prefix)
    if pos + length > len(data):
        raise ValueError("truncated string")
    return (length * 8 // 5 + 1 if huffman else length), pos + length


def section_bounds(data: bytes, table_capacity: int) -> tuple[int, int] | None:
    """(field lines, upper bound of the decoded size with 32 bytes per field) of an encoded
    field section, or None when it is malformed (the decoder will say so)."""
    dynamic_max = max(table_capacity, _STATIC_ENTRY_MAX)
    try:
        _, pos = _integer(data, 0, 8)  # Required Insert Count
        _, pos = _integer(data, pos, 7)  # sign bit and Delta Base
        lines = size = 0
        while pos < len(data):
            first = data[pos]
            lines += 1
            if first & 0x80:  # indexed field line: 1 T index(6)
                _, pos = _integer(data, pos, 6)
                size += _STATIC_ENTRY_MAX if first & 0x40 else dynamic_max
            elif first & 0x40:  # literal with name reference: 01 N T index(4), value
                _, pos = _integer(data, pos, 4)
                value, pos = _string(data, pos, 7)
                size += (_STATIC_ENTRY_MAX if first & 0x10 else dynamic_max) + value
            elif first & 0x20:  # literal with literal name: 001 N H length(3), name, value
                name, pos = _string(data, pos, 3)
                value, pos = _string(data, pos, 7)
                size += 32 + name + value
            elif first & 0x10:  # indexed with post-base index: 0001 index(4)
                _, pos = _integer(data, pos, 4)
                size += dynamic_max
            else:  # literal with post-base name reference: 0000 N index(3), value
                _, pos = _integer(data, pos, 3)
                value, pos = _string(data, pos, 7)
                size += dynamic_max + value
    except ValueError:
        return None
    return lines, size
