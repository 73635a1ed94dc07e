"""An HPACK (RFC 7541) header-block decoder, for the quick control client only.

The ``hpack`` package costs ~12 ms to import (it pulls in ``logging``), a good part of
what a quick command (``ephemerd status``, a gitlab-executor stage) may spend above the
interpreter's own start. This is the decoding half alone: static and dynamic tables,
every field representation, table size updates and Huffman-coded strings. The Huffman
code is canonical, so 257 code lengths are the whole table. Tests compare it with
``hpack``'s encoder.
"""

from __future__ import annotations

__all__ = ["HpackDecoder", "HpackError"]

# RFC 7541 appendix A, one "name [value]" per line.
_STATIC_TEXT = """
:authority
:method GET
:method POST
:path /
:path /index.html
:scheme http
:scheme https
:status 200
:status 204
:status 206
:status 304
:status 400
:status 404
:status 500
accept-charset
accept-encoding gzip, deflate
accept-language
accept-ranges
accept
access-control-allow-origin
age
allow
authorization
cache-control
content-disposition
content-encoding
content-language
content-length
content-location
content-range
content-type
cookie
date
etag
expect
expires
from
host
if-match
if-modified-since
if-none-match
if-range
if-unmodified-since
last-modified
link
location
max-forwards
proxy-authenticate
proxy-authorization
range
referer
refresh
retry-after
server
set-cookie
strict-transport-security
transfer-encoding
user-agent
vary
via
www-authenticate
"""
_STATIC = tuple(
    (name.encode(), value.encode())
    for name, _, value in (line.partition(" ") for line in _STATIC_TEXT.strip().splitlines())
)

# Huffman code length of each symbol 0..256, as chr(ord("A") + length - 5).
_LENGTHS = (
    "ISXXXXXXXTZXXZXXXXXXXXZXXXXXXXXXBFFHIBDGFFDGDBBBAAABBBBBBBCDKBHFIBCCCCCCCCCCCCCCCCCCCC"
    "CCDCDIOIJBKABABABBBACCBBBABCBAABCCCCCKGJIXPRPPRRRSRSSSSSTSTTRSTSSSSQRSRSSTRQPRRSSQSRRT"
    "QRSSQQRQSRSSPRRRSRRSVVPORSRUVVVWWVTUOQVWWVWTQQVVXWWWPTPQRQQSRRUUTTVSVWVVWWWWWXWWWWWVZ"
)
_EOS = 256


def _canonical() -> tuple[list[int], list[int], list[int], list[int]]:
    """Per code length: the first code, the count, and where its symbols start."""
    lengths = [ord(c) - ord("A") + 5 for c in _LENGTHS]
    symbols = sorted(range(257), key=lambda s: (lengths[s], s))
    count = [0] * 32
    for length in lengths:
        count[length] += 1
    first, offset = [0] * 32, [0] * 32
    code = index = 0
    for length in range(1, 32):
        first[length], offset[length] = code, index
        code = (code + count[length]) << 1
        index += count[length]
    return first, count, offset, symbols


_FIRST, _COUNT, _OFFSET, _SYMBOLS = _canonical()


class HpackError(Exception):
    """The header block is not valid HPACK."""


class HpackDecoder:
    """Decodes the header blocks of one connection, in order (they share a table)."""

    def __init__(self, max_table_size: int = 4096) -> None:
        self._limit = max_table_size  # what we allowed the peer (SETTINGS_HEADER_TABLE_SIZE)
        self._max = max_table_size
        self._table: list[tuple[bytes, bytes]] = []  # newest first
        self._size = 0

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        """The fields of *block*, names and values as UTF-8 text.

        Raises:
            HpackError: *block* is malformed or refers to entries that do not exist.
        """
        fields: list[tuple[str, str]] = []
        pos = 0
        while pos < len(block):
            byte = block[pos]
            if byte & 0x80:  # indexed field
                index, pos = _integer(block, pos, 7)
                fields.append(_text(self._entry(index)))
            elif byte & 0x40:  # literal, added to the table
                name, value, pos = self._literal(block, pos, 6)
                self._add(name, value)
                fields.append(_text((name, value)))
            elif byte & 0x20:  # dynamic table size update
                size, pos = _integer(block, pos, 5)
                if size > self._limit:
                    raise HpackError(f"table size {size} above the limit {self._limit}")
                self._max = size
                self._evict()
            else:  # literal, not indexed or never indexed
                name, value, pos = self._literal(block, pos, 4)
                fields.append(_text((name, value)))
        return fields

    def _literal(self, block: bytes, pos: int, prefix: int) -> tuple[bytes, bytes, int]:
        index, pos = _integer(block, pos, prefix)
        if index:
            name = self._entry(index)[0]
        else:
            name, pos = _string(block, pos)
        value, pos = _string(block, pos)
        return name, value, pos

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 1 <= index <= len(_STATIC):
            return _STATIC[index - 1]
        if len(_STATIC) < index <= len(_STATIC) + len(self._table):
            return self._table[index - len(_STATIC) - 1]
        raise HpackError(f"no table entry {index}")

    def _add(self, name: bytes, value: bytes) -> None:
        self._table.insert(0, (name, value))
        self._size += len(name) + len(value) + 32
        self._evict()

    def _evict(self) -> None:
        while self._size > self._max:
            name, value = self._table.pop()
            self._size -= len(name) + len(value) + 32


def _integer(block: bytes, pos: int, prefix: int) -> tuple[int, int]:
    if pos >= len(block):
        raise HpackError("block ends inside a field")
    mask = (1 << prefix) - 1
    value = block[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while pos < len(block) and shift <= 28:
        byte = block[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise HpackError("bad integer")


def _string(block: bytes, pos: int) -> tuple[bytes, int]:
    huffman = pos < len(block) and bool(block[pos] & 0x80)
    length, pos = _integer(block, pos, 7)
    if pos + length > len(block):
        raise HpackError("string runs past the block")
    data = block[pos : pos + length]
    return (_huffman(data) if huffman else data), pos + length


def _huffman(data: bytes) -> bytes:
    out = bytearray()
    code = length = 0
    for byte in data:
        for shift in range(7, -1, -1):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            i = code - _FIRST[length]
            if 0 <= i < _COUNT[length]:
                symbol = _SYMBOLS[_OFFSET[length] + i]
                if symbol == _EOS:
                    raise HpackError("EOS in a Huffman string")
                out.append(symbol)
                code = length = 0
            elif length == 30:
                raise HpackError("bad Huffman code")
    if length > 7 or code != (1 << length) - 1:  # padding: < 8 bits, all ones
        raise HpackError("bad Huffman padding")
    return bytes(out)


def _text(field: tuple[bytes, bytes]) -> tuple[str, str]:
    try:
        return field[0].decode(), field[1].decode()
    except UnicodeDecodeError:
        raise HpackError("a header that is not UTF-8") from None
