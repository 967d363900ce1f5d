"""Numba kernels of phrase detection: bytes -> word ids, word-pair counts, joining pairs, ids -> bytes.

Conventions shared by the kernels:
  buf     uint8 (B,)   a piece of the corpus that ends at whitespace (no token is cut)
  ids     int32 (T,)   the corpus as word ids in order, NEWLINE (-1) for each line break, as word2phrase
                       reads "</s>" for each newline
  words   arena uint8 (A,), offsets int64 (W+1,), hashes uint64 (W,): word w is the bytes
          arena[offsets[w]:offsets[w+1]], with its FNV-1a hash; slots int64 (S,) open addressing
          (linear probing) from hash to word id, EMPTY when free; sizes int64 (2,) = [W, bytes used]
  keys    int64 (C,)   a pair of word ids (a, b) as a << 32 | b, or EMPTY; counts int64 (C,) their counts
Tables are powers of two probed from a Fibonacci hash; the caller grows them (rehash) before they fill.
Tokens are split at the characters Python's str.split() splits at (ASCII and Unicode whitespace in UTF-8),
so that a corpus is cut into the same tokens as the trainer's first pass; only "\n" ends a line.
"""
from __future__ import annotations

import numpy as np
from numba import njit

EMPTY = -1
NEWLINE = -1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@njit(nogil=True, cache=True, inline="always")
def _home(h, shift):
    """The first slot to probe for the uint64 hash h in a table of 2**(64 - shift) slots."""
    return np.int64((h * _GOLDEN) >> np.uint64(shift))


@njit(nogil=True, cache=True, inline="always")
def _shift(table):
    bits = 0
    while (1 << bits) < table.shape[0]:
        bits += 1
    return 64 - bits


@njit(nogil=True, cache=True, inline="always")
def _ascii_space(b):
    return b == 32 or 9 <= b <= 13 or 28 <= b <= 31


@njit(nogil=True, cache=True)
def wide_spaces_to_ascii(buf):
    """A copy of buf with each byte of every non-ASCII whitespace character (U+0085, U+00A0, U+1680,
    U+2000..200A, U+2028, U+2029, U+202F, U+205F, U+3000 in UTF-8) replaced by a space, so that encode
    cuts tokens exactly where str.split() does."""
    out = buf.copy()
    n = buf.shape[0]
    for i in range(n):
        b = buf[i]
        if b == 0xC2 and i + 1 < n and (buf[i + 1] == 0x85 or buf[i + 1] == 0xA0):
            out[i:i + 2] = 32
        elif 0xE1 <= b <= 0xE3 and i + 2 < n:
            c, d = buf[i + 1], buf[i + 2]
            if ((b == 0xE1 and c == 0x9A and d == 0x80) or (b == 0xE3 and c == 0x80 and d == 0x80)
                    or (b == 0xE2 and c == 0x80 and (0x80 <= d <= 0x8A or d == 0xA8 or d == 0xA9 or d == 0xAF))
                    or (b == 0xE2 and c == 0x81 and d == 0x9F)):
                out[i:i + 3] = 32
    return out


@njit(nogil=True, cache=True, inline="always")
def _word_slot(buf, start, end, h, arena, offsets, hashes, slots, shift):
    """(slot, word id) of the word buf[start:end], or (its free slot, -1) when it is not held."""
    mask = slots.shape[0] - 1
    slot = _home(h, shift)
    while True:
        w = slots[slot]
        if w == EMPTY:
            return slot, -1
        lo = offsets[w]
        if hashes[w] == h and offsets[w + 1] - lo == end - start:
            same = True
            for k in range(end - start):
                if arena[lo + k] != buf[start + k]:
                    same = False
                    break
            if same:
                return slot, w
        slot = (slot + 1) & mask


@njit(nogil=True, cache=True)
def encode(buf, pos, out, written, arena, offsets, hashes, slots, sizes):
    """Append the ids of buf[pos:]'s tokens (NEWLINE for each "\\n") to out int32 (>= B + 1,) from
    out[written]; a word not seen before becomes the next id. Tokens are cut at ASCII whitespace only:
    pass buf through wide_spaces_to_ascii first when it holds bytes >= 0xC2. Returns (pos, written,
    need): need > 0 when it stopped before a new word of need bytes because the word tables are full
    (grow them, call again)."""
    n, shift = buf.shape[0], _shift(slots)
    while pos < n:
        b = buf[pos]
        if _ascii_space(b):
            if b == 10:
                out[written] = NEWLINE
                written += 1
            pos += 1
            continue
        end = pos + 1
        h = (_FNV_OFFSET ^ np.uint64(b)) * _FNV_PRIME
        while end < n and not _ascii_space(buf[end]):
            h = (h ^ np.uint64(buf[end])) * _FNV_PRIME
            end += 1
        slot, w = _word_slot(buf, pos, end, h, arena, offsets, hashes, slots, shift)
        if w < 0:
            w, used = sizes[0], sizes[1]
            if (used + end - pos > arena.shape[0] or w + 2 > offsets.shape[0] or w + 1 > hashes.shape[0]
                    or 2 * (w + 1) > slots.shape[0]):
                return pos, written, end - pos
            for k in range(end - pos):
                arena[used + k] = buf[pos + k]
            offsets[w + 1], hashes[w], slots[slot] = used + end - pos, h, w
            sizes[0], sizes[1] = w + 1, used + end - pos
        out[written] = w
        written += 1
        pos = end
    return pos, written, 0


@njit(nogil=True, cache=True)
def rehash_words(hashes, n_words, slots):
    """Fill the empty slots int64 (S,) with words 0..n_words-1 by their hashes."""
    shift, mask = _shift(slots), slots.shape[0] - 1
    for w in range(n_words):
        slot = _home(hashes[w], shift)
        while slots[slot] != EMPTY:
            slot = (slot + 1) & mask
        slots[slot] = w


@njit(nogil=True, cache=True, inline="always")
def _add_pair(keys, counts, key, count, shift, mask):
    """Add count to key's slot; returns 1 when the key was new, else 0."""
    slot = _home(np.uint64(key), shift)
    while True:
        found = keys[slot]
        if found == key:
            counts[slot] += count
            return 0
        if found == EMPTY:
            keys[slot] = key
            counts[slot] = count
            return 1
        slot = (slot + 1) & mask


@njit(nogil=True, cache=True)
def count_pairs(ids, pos, previous, unigrams, keys, counts, size, stop_at):
    """From ids[pos], count each word in unigrams int64 (W,) and each pair of consecutive words in the
    table; pairs are counted across NEWLINE, as word2phrase counts them. previous: the word before ids[pos]
    (-1: none). Stops right after a pair that makes the table hold stop_at pairs, so that the caller can
    grow or prune it. Returns (pos, previous, size)."""
    shift, mask = _shift(keys), keys.shape[0] - 1
    for i in range(pos, ids.shape[0]):
        current = np.int64(ids[i])
        if current < 0:
            continue
        unigrams[current] += 1
        if previous >= 0:
            size += _add_pair(keys, counts, (previous << 32) | current, 1, shift, mask)
        previous = current
        if size >= stop_at:
            return i + 1, previous, size
    return ids.shape[0], previous, size


@njit(nogil=True, cache=True)
def rehash(keys, counts, new_keys, new_counts):
    """Insert the pairs of (keys, counts) (a table, or plain arrays without EMPTY) into the empty table
    (new_keys, new_counts), large enough to hold them; returns how many were inserted."""
    shift, mask = _shift(new_keys), new_keys.shape[0] - 1
    size = 0
    for slot in range(keys.shape[0]):
        if keys[slot] != EMPTY:
            size += _add_pair(new_keys, new_counts, keys[slot], counts[slot], shift, mask)
    return size


@njit(nogil=True, cache=True)
def surviving(keys, counts, min_reduce):
    """(keys, counts) int64 (S,) of the pairs counted more than min_reduce times, in slot order."""
    keep = (keys != EMPTY) & (counts > min_reduce)
    return keys[keep], counts[keep]


@njit(nogil=True, cache=True)
def frequent_slots(keys, counts, unigrams, min_count):
    """int64 (P,): the slots of the pairs (a, b) that occur, and whose a and b occur, at least min_count
    times each (the candidates word2phrase scores: every other pair scores 0)."""
    found = 0
    slots = np.empty(0, dtype=np.int64)
    for phase in range(2):
        if phase == 1:
            slots = np.empty(found, dtype=np.int64)
            found = 0
        for slot in range(keys.shape[0]):
            key = keys[slot]
            if key == EMPTY or counts[slot] < min_count:
                continue
            if unigrams[key >> 32] >= min_count and unigrams[key & 0xFFFFFFFF] >= min_count:
                if phase == 1:
                    slots[found] = slot
                found += 1
    return slots


@njit(nogil=True, cache=True)
def join_pairs(ids, phrase_keys, phrase_ids):
    """Rewrite ids in place, left to right as word2phrase: a pair whose key is in the table phrase_keys
    int64 (C,) becomes the phrase id in the same slot of phrase_ids int64 (C,), never across NEWLINE, and
    a token that ended a phrase does not begin another. Returns the new length."""
    shift, mask = _shift(phrase_keys), phrase_keys.shape[0] - 1
    written, fresh = 0, False  # fresh: ids[written - 1] is a phrase made here
    for i in range(ids.shape[0]):
        current = ids[i]
        if current >= 0 and written > 0 and not fresh and ids[written - 1] >= 0:
            key = (np.int64(ids[written - 1]) << 32) | current
            slot = _home(np.uint64(key), shift)
            while phrase_keys[slot] != EMPTY and phrase_keys[slot] != key:
                slot = (slot + 1) & mask
            if phrase_keys[slot] == key:
                ids[written - 1] = phrase_ids[slot]
                fresh = True
                continue
        ids[written] = current
        written += 1
        fresh = False
    return written


@njit(nogil=True, cache=True)
def render(ids, pos, arena, offsets, out, line_start):
    """The text of ids[pos:] into out uint8 (O,): one space between the words of a line, "\\n" for each
    NEWLINE. Returns (pos, bytes written, line_start) when done or when the next token does not fit."""
    written = 0
    for i in range(pos, ids.shape[0]):
        w = ids[i]
        if w < 0:
            if written + 1 > out.shape[0]:
                return i, written, line_start
            out[written] = 10
            written += 1
            line_start = True
            continue
        lo, hi = offsets[w], offsets[w + 1]
        if written + hi - lo + 1 > out.shape[0]:
            return i, written, line_start
        if not line_start:
            out[written] = 32
            written += 1
        for k in range(lo, hi):
            out[written] = arena[k]
            written += 1
        line_start = False
    return ids.shape[0], written, line_start
