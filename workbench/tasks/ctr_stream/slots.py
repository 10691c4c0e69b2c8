"""The slot text format, read and written with numpy over whole files (no Python loop per token or per line).

A line is `[ins_id<TAB>]feasign:slot feasign:slot ...` - value first, then slot (PaddleRec slot_dnn):
- slot 1 carries the click label (`1:1` clicked, `0:1` not; any value > 0 counts as a click);
- other slots carry uint64 feature ids, several per slot allowed; feasign 0 is padding and is dropped;
- everything before the first tab of a line is its ins_id.
A malformed line (a token that is not digits:digits, a feasign above 2**64-1, a slot above 65535, no or several
click labels) is skipped and counted; the first few are kept with their line number, reason and text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MAX_FEASIGN_DIGITS = 20  # 18446744073709551615
MAX_SLOT_DIGITS = 5
MAX_SLOT = 65535
QUOTED_BAD_LINES = 5

_U64_MAX_PARTS = (np.uint64(1844), np.uint64(67440737), np.uint64(9551615))  # 2**64-1 = 1844|67440737|09551615
_KEY_WINDOW = 24  # bytes read before the colon: 3 uint64 words, enough for 20 digits
_PAD = b" " * _KEY_WINDOW  # so that every window starts inside the buffer


@dataclass
class BadLine:
    line: int  # 1-based line number in the file
    reason: str
    text: str


@dataclass
class ParsedLines:
    """The good lines of one file, as CSR arrays: the tokens of line i are keys/slots[offsets[i]:offsets[i+1]]."""

    labels: np.ndarray  # float32 [L], 1.0 = clicked
    offsets: np.ndarray  # int64 [L + 1]
    keys: np.ndarray  # uint64 [T]
    slots: np.ndarray  # uint16 [T]
    line_numbers: np.ndarray  # int64 [L], 1-based
    ins_ids: list[str] | None = None  # only when asked for
    total_lines: int = 0  # non-blank lines seen, good or bad
    bad_count: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)  # the first QUOTED_BAD_LINES

    @property
    def num_lines(self) -> int:
        return int(self.labels.shape[0])


def parse_slot_lines(data: bytes, keep_slots: np.ndarray | None = None, with_ins_id: bool = False) -> ParsedLines:
    """Parse a whole file. `keep_slots` is a bool [65536] mask of the slots to keep (None keeps all but slot 1)."""
    # Leading padding lets every token's fixed-width windows start inside the buffer; positions below are in `buf`.
    buf = np.frombuffer(_PAD + data + (b"" if not data or data.endswith(b"\n") else b"\n"), dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    num_lines = newlines.size

    # Tokens are maximal runs of bytes > 32 (space, tab, CR, LF and control bytes separate tokens). The buffer
    # starts with padding and ends with a newline, so the run boundaries alternate start, end, start, end, ...
    solid = buf > 32
    bounds = np.flatnonzero(solid[1:] != solid[:-1]) + 1
    del solid
    starts, ends = bounds[0::2], bounds[1::2]
    # line of each token: tokens are in file order, so count the tokens before each newline (L searches among the
    # T tokens) and repeat the line numbers, rather than searching each token among the newlines (T log L)
    before = np.searchsorted(starts, newlines)
    tok_line = np.repeat(np.arange(num_lines), np.diff(before, prepend=0))

    # Everything before a line's first tab is its ins_id; those tokens are not features.
    tabs = np.flatnonzero(buf == 9)
    lines_with_tab, first = np.unique(np.searchsorted(newlines, tabs), return_index=True)
    line_start = np.concatenate(([len(_PAD)], newlines[:-1] + 1)) if num_lines else np.zeros(0, dtype=np.int64)
    feature_start = line_start.copy()
    feature_start[lines_with_tab] = tabs[first] + 1
    has_text = np.zeros(num_lines, dtype=bool)
    has_text[tok_line] = True
    is_feature = starts >= feature_start[tok_line]
    starts, ends, tok_line = starts[is_feature], ends[is_feature], tok_line[is_feature]

    keys, slots, tok_ok = _parse_tokens(buf, starts, ends)

    # Line verdicts: every token well formed and exactly one click label (slot 1).
    bad_tokens = np.bincount(tok_line[~tok_ok], minlength=num_lines)
    is_label = tok_ok & (slots == 1)
    label_count = np.bincount(tok_line[is_label], minlength=num_lines)
    good_line = has_text & (bad_tokens == 0) & (label_count == 1)
    bad_line = has_text & ~good_line
    labels_all = np.zeros(num_lines, dtype=np.float32)
    labels_all[tok_line[is_label]] = (keys[is_label] > 0).astype(np.float32)

    keep = good_line[tok_line] & (keys != 0) & (slots != 1)
    if keep_slots is not None:
        keep &= keep_slots[slots]
    good_idx = np.flatnonzero(good_line)
    # tokens are in file order, so each good line's kept tokens are contiguous: CSR offsets from counts
    counts = np.bincount(tok_line[keep], minlength=num_lines)[good_idx]
    offsets = np.zeros(good_idx.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])

    result = ParsedLines(
        labels=labels_all[good_idx],
        offsets=offsets,
        keys=keys[keep],
        slots=slots[keep].astype(np.uint16),
        line_numbers=good_idx.astype(np.int64) + 1,
        total_lines=int(has_text.sum()),
        bad_count=int(bad_line.sum()),
    )
    raw = buf.tobytes() if (with_ins_id or bad_line.any()) else b""
    if with_ins_id:  # one Python string per line, only when a dump asks for them
        result.ins_ids = [raw[line_start[i] : feature_start[i] - 1].decode("utf-8", "replace") if feature_start[i] > line_start[i]
                          else "" for i in good_idx.tolist()]
    for i in np.flatnonzero(bad_line)[:QUOTED_BAD_LINES].tolist():
        result.bad_lines.append(_describe_bad_line(raw, i, line_start[i], newlines[i], bad_tokens[i], label_count[i],
                                                   starts, ends, tok_line, tok_ok))
    return result


def _parse_tokens(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values of `digits:digits` tokens: (feasign uint64 [T], slot int64 [T], well-formed bool [T]).

    Per token, whole 8-byte words are copied out of the buffer (rows of a sliding-window view) and handled with
    SWAR bit tricks on uint64 arrays, never one byte per numpy element:
    - the word ending at the token's end holds the colon and the slot's 1..5 digits;
    - the three words (24 bytes) ending at the colon hold the feasign's 1..20 digits; bytes before the token are
      masked to '0', every byte is checked to be a digit, and each word converts to an 8-digit number.
    """
    t = starts.size
    if t == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, bool)
    tail = sliding_window_view(buf, 8)[ends - 8].view(np.uint64)[:, 0]  # byte 7 = the token's last byte
    digit_bits = _byte_bits(_digit_flags(tail))
    colon_bits = _byte_bits(_zero_byte_flags(tail ^ _repeat(0x3A)))
    nd_slot = _TOP_RUN[digit_bits]  # digits at the end of the token
    colon_byte = 7 - nd_slot
    colon = ends - 1 - nd_slot
    nd_key = colon - starts
    ok = (nd_slot >= 1) & (nd_slot <= MAX_SLOT_DIGITS) & (nd_key >= 1) & (nd_key <= MAX_FEASIGN_DIGITS)
    ok &= ((colon_bits >> np.maximum(colon_byte, 0)) & 1).astype(bool)
    slots = _swar_8_digits(_mask_low_bytes(tail, np.clip(8 - nd_slot, 0, 8))).astype(np.int64)

    words = sliding_window_view(buf, _KEY_WINDOW)[np.maximum(colon, _KEY_WINDOW) - _KEY_WINDOW].view(np.uint64)
    parts = []
    for k in range(3):  # word k covers window bytes 8k..8k+7; the key's digits are the last nd_key bytes
        lead = _KEY_WINDOW - nd_key - 8 * k  # bytes of word k before the key (to become '0'), if > 0
        if k == 0:
            w = _mask_low_bytes(words[:, 0], np.clip(lead, 0, 8))
        else:  # hashed feasigns have 16-20 digits: only short keys (the labels, ...) need masking here
            w = words[:, k].copy()
            short = np.flatnonzero(lead > 0)
            w[short] = _mask_low_bytes(w[short], np.minimum(lead[short], 8))
        ok &= _digit_flags(w) == _repeat(0x80)
        parts.append(_swar_8_digits(w))
    high, mid, low = parts  # key = high * 10**16 + mid * 10**8 + low, high < 10**8
    keys = (high * np.uint64(10**16)) + (mid * np.uint64(10**8)) + low  # wraps only when the key is out of range:
    ok &= (high < _U64_MAX_PARTS[0]) | (  # compare the three parts with those of 2**64 - 1
        (high == _U64_MAX_PARTS[0]) & ((mid < _U64_MAX_PARTS[1]) | ((mid == _U64_MAX_PARTS[1]) & (low <= _U64_MAX_PARTS[2])))
    )
    ok &= slots <= MAX_SLOT
    return keys, np.where(ok, slots, 0), ok


def _repeat(byte: int) -> np.uint64:
    return np.uint64(byte * 0x0101010101010101)


def _digit_flags(w: np.ndarray) -> np.ndarray:
    """High bit of each byte set iff that byte is an ASCII digit (exact per byte: no carry crosses bytes)."""
    x = w ^ _repeat(0x30)  # digits -> 0x00..0x09
    too_big = ((x & _repeat(0x7F)) + _repeat(0x76)) | x  # high bit set iff the byte is >= 0x0A
    return ~too_big & _repeat(0x80)


def _zero_byte_flags(x: np.ndarray) -> np.ndarray:
    """High bit of each byte set iff that byte is 0 (exact per byte)."""
    return ~(((x & _repeat(0x7F)) + _repeat(0x7F)) | x | _repeat(0x7F))


def _byte_bits(flags: np.ndarray) -> np.ndarray:
    """Gather the high bits of the 8 bytes into an 8-bit mask (bit i = byte i) - int64 in 0..255."""
    return (((flags >> np.uint64(7)) & _repeat(0x01)) * np.uint64(0x0102040810204080) >> np.uint64(56)).astype(np.int64)


def _mask_low_bytes(w: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Replace the `count` lowest bytes (the first characters of the text) with '0'."""
    m = _LOW_BYTES[count]
    return (w & ~m) | (_repeat(0x30) & m)


def _swar_8_digits(w: np.ndarray) -> np.ndarray:
    """8 ASCII digits in a little-endian word (first character = lowest byte) -> their value, in three
    multiply-shift steps (pairs, quads, octets). Wrapping uint64 multiplication is intended."""
    v = w - _repeat(0x30)
    v = ((v * np.uint64(10)) + (v >> np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    v = ((v * np.uint64(100)) + (v >> np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    return ((v * np.uint64(10000)) + (v >> np.uint64(32))) & np.uint64(0xFFFFFFFF)


_LOW_BYTES = np.array([(1 << (8 * j)) - 1 for j in range(9)], dtype=np.uint64)
# _TOP_RUN[m]: how many of the highest bits of the 8-bit mask m are set in a row (bit 7 down)
_TOP_RUN = np.array([next((j for j in range(8) if not (m >> (7 - j)) & 1), 8) for m in range(256)], dtype=np.int64)


def _describe_bad_line(data: bytes, i: int, start: int, end: int, bad_tokens: int, labels: int,
                       starts: np.ndarray, ends: np.ndarray, tok_line: np.ndarray, tok_ok: np.ndarray) -> BadLine:
    text = data[start:end].decode("utf-8", "replace")
    if bad_tokens:
        j = int(np.flatnonzero((tok_line == i) & ~tok_ok)[0])
        token = data[starts[j] : ends[j]].decode("utf-8", "replace")
        reason = f"token {token[:60]!r} is not feasign:slot (digits, feasign <= 2**64-1, slot <= {MAX_SLOT})"
    elif labels == 0:
        reason = "no click label (a `0:1` or `1:1` token for slot 1)"
    else:
        reason = f"{labels} click labels (slot 1) in one line"
    return BadLine(line=i + 1, reason=reason, text=text[:200] + ("..." if len(text) > 200 else ""))


# -- writing ------------------------------------------------------------------------------------------------------
def render_slot_lines(labels: np.ndarray, offsets: np.ndarray, keys: np.ndarray, slots: np.ndarray,
                      ins_ids: np.ndarray | None = None) -> bytes:
    """Text of lines `[ins_id<TAB>]label:1 key:slot ...` from CSR arrays (ins_ids: non-negative ints or None)."""
    lines = labels.shape[0]
    counts = np.diff(offsets)
    # every line is: optional ins_id token, the label token, its feature tokens; build one flat token list
    per_line = counts + 1 + (1 if ins_ids is not None else 0)
    total = int(per_line.sum())
    line_first = np.zeros(lines + 1, dtype=np.int64)
    np.cumsum(per_line, out=line_first[1:])
    values = np.zeros(total, dtype=np.uint64)
    tok_slot = np.full(total, -1, dtype=np.int64)  # -1: no ":slot" part (the ins_id)
    sep = np.full(total, 32, dtype=np.uint8)
    label_at = line_first[:-1] + (1 if ins_ids is not None else 0)
    if ins_ids is not None:
        values[line_first[:-1]] = np.asarray(ins_ids, dtype=np.uint64)
        sep[line_first[:-1]] = 9
    values[label_at] = (np.asarray(labels) > 0).astype(np.uint64)
    tok_slot[label_at] = 1
    feature_at = np.repeat(label_at + 1 - offsets[:-1], counts) + np.arange(int(offsets[-1]))
    values[feature_at] = keys
    tok_slot[feature_at] = slots
    sep[line_first[1:] - 1] = 10
    return _render_tokens(values, tok_slot, sep)


def _ndigits(values: np.ndarray) -> np.ndarray:
    powers = np.array([10**k for k in range(1, 20)], dtype=np.uint64)
    return np.searchsorted(powers, values, side="right") + 1


def _render_tokens(values: np.ndarray, slots: np.ndarray, sep: np.ndarray) -> bytes:
    nd_val = _ndigits(values)
    has_slot = slots >= 0
    nd_slot = np.where(has_slot, _ndigits(np.maximum(slots, 0).astype(np.uint64)), 0)
    length = nd_val + has_slot * (1 + nd_slot) + 1
    start = np.zeros(values.size + 1, dtype=np.int64)
    np.cumsum(length, out=start[1:])
    out = np.zeros(int(start[-1]), dtype=np.uint8)
    _write_digits(out, start[:-1], nd_val, values)
    colon_at = start[:-1] + nd_val
    out[colon_at[has_slot]] = 58
    _write_digits(out, colon_at[has_slot] + 1, nd_slot[has_slot], slots[has_slot].astype(np.uint64))
    out[start[1:] - 1] = sep
    return out.tobytes()


def _write_digits(out: np.ndarray, at: np.ndarray, ndig: np.ndarray, values: np.ndarray) -> None:
    rest = values.copy()
    ten = np.uint64(10)
    for j in range(int(ndig.max()) if ndig.size else 0):  # j-th digit from the right
        live = j < ndig
        out[(at + ndig - 1 - j)[live]] = (rest[live] % ten).astype(np.uint8) + 48
        rest //= ten
