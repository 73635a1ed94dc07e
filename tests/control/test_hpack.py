"""The HPACK decoder of the quick client against the ``hpack`` package's encoder."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hpack import Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable
from hypothesis import given

from ephemerd.control._hpack import HpackDecoder, HpackError, _huffman  # pyright: ignore[reportPrivateUsage]

_names = st.one_of(
    st.sampled_from([n.decode() for n, _ in HeaderTable.STATIC_TABLE] + ["grpc-status", "te"]),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=30),
)
_values = st.one_of(
    st.sampled_from(["", "0", "200", "application/grpc", "POST", "gzip, deflate"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=300),
)
_field = st.tuples(_names, _values, st.booleans())
_blocks = st.lists(st.lists(_field, max_size=12), min_size=1, max_size=6)


def test_static_table_is_rfc_7541s() -> None:
    decoder = HpackDecoder()
    for index, entry in enumerate(HeaderTable.STATIC_TABLE, start=1):
        assert decoder.decode(bytes([0x80 | index])) == [(entry[0].decode(), entry[1].decode())]
    with pytest.raises(HpackError):
        decoder.decode(bytes([0x80 | 62]))  # the dynamic table is empty


def test_huffman_table_is_rfc_7541s() -> None:
    encoder = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    every = bytes(range(256))
    assert _huffman(encoder.encode(every)) == every
    for symbol in range(256):
        assert _huffman(encoder.encode(bytes([symbol]) * 3)) == bytes([symbol]) * 3


@given(_blocks, st.booleans(), st.lists(st.integers(0, 4096), max_size=6))
def test_matches_hpack_encoder(
    blocks: list[list[tuple[str, str, bool]]], huffman: bool, sizes: list[int]
) -> None:
    encoder = Encoder()
    decoder = HpackDecoder()
    for n, fields in enumerate(blocks):
        if n < len(sizes):
            encoder.header_table_size = sizes[n]  # the next block starts with a size update
        headers = [
            NeverIndexedHeaderTuple(name, value) if sensitive else HeaderTuple(name, value)
            for name, value, sensitive in fields
        ]
        block = encoder.encode(headers, huffman=huffman)
        assert decoder.decode(block) == [(name, value) for name, value, _ in fields]


@pytest.mark.parametrize(
    "block",
    [
        b"\x80",  # index 0
        b"\xff\xff\xff\xff\xff\xff\xff",  # an endless integer
        b"\x00\x05ab",  # a name longer than the block
        b"\x00\x01a",  # no value
        b"\x00\x01a\x81\xff",  # Huffman padding of 8 bits
        b"\x00\x01a\x84\xff\xff\xff\xff",  # EOS
        b"\x3f\xe2\x1f",  # a table size of 4097, above the 4096 allowed
        b"\x00\x01a\x01\xff",  # not UTF-8
    ],
)
def test_malformed_blocks_are_refused(block: bytes) -> None:
    with pytest.raises(HpackError):
        HpackDecoder().decode(block)
