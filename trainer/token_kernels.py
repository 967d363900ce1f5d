"""Numba kernels of the tokenizer: bytes -> word ids and counts through one hash table of words.

The first pass over a corpus and phrase detection both read text through these kernels.
Conventions:
  buf     uint8 (B,)   a piece of the corpus that ends at whitespace (no token is cut)
  out     int32        word ids in corpus order, NEWLINE (-1) for each "\\n"
  a word table, which the caller allocates and grows:
    arena   uint8 (A,)    the words' bytes, one after another: word w is arena[offsets[w]:offsets[w+1]]
    offsets int64 (>= W+1,)
    slots   int64 (S, 4)  open addressing (linear probing; S a power of two, at most 3/4 full) from a word's
                          hash (8 bytes at a time): the row [hash, id | length << 32, count, at], id EMPTY when free;
                          at is the word's bytes themselves (first byte lowest) when it has at most INLINE,
                          else its arena offset. The row holds all a look-up needs, so a token costs one
                          cache miss (two for a long word), and its count is kept where it is found.
    sizes   int64 (2,)    [W, arena bytes used]
Tokens are split at the characters Python's str.split() splits at (ASCII and Unicode whitespace in UTF-8);
only "\\n" ends a line.
"""
from __future__ import annotations

import numpy as np

from trainer.jit import njit, prefetch

EMPTY = -1
NEWLINE = -1
HASH, ID, COUNT, AT = 0, 1, 2, 3  # the columns of a slot row
MERGE_AHEAD = 16  # merge prefetches the home slot of the word this many ahead
INLINE = 8  # a word of at most this many bytes is held in its row's AT column instead of its arena offset
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MURMUR_1 = np.uint64(0xFF51AFD7ED558CCD)
_MURMUR_2 = np.uint64(0xC4CEB9FE1A85EC53)
_SPACE = np.zeros(256, dtype=np.bool_)  # the bytes str.split() splits at, among ASCII
_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True
_LOW = 0xFFFFFFFF


@njit(nogil=True, cache=True, inline="always")
def home(h, shift):
    """The first slot to probe for the uint64 hash h in a table of 2**(64 - shift) slots."""
    return np.int64((h * _GOLDEN) >> np.uint64(shift))


@njit(nogil=True, cache=True, inline="always")
def shift_of(size):
    """The shift for home() in a table of size slots (a power of two)."""
    bits = 0
    while (1 << bits) < size:
        bits += 1
    return 64 - bits


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
def _find(buf, start, end, h, packed, arena, slots, mask, shift):
    """The slot of the word buf[start:end] (hash h; packed: its bytes as an int64 when at most 8), or
    the free slot where it would go."""
    slot = home(h, shift)
    length = end - start
    while True:
        if slots[slot, ID] == EMPTY:
            return slot
        if slots[slot, HASH] == np.int64(h) and (slots[slot, ID] >> 32) == length:
            if length <= INLINE:
                if slots[slot, AT] == packed:
                    return slot
            else:
                lo = slots[slot, AT]
                same = True
                for k in range(length):
                    if arena[lo + k] != buf[start + k]:
                        same = False
                        break
                if same:
                    return slot
        slot = (slot + 1) & mask


@njit(nogil=True, cache=True, inline="always")
def _mix(h):
    """One step of the word hash: 8 bytes of the word (xored in) stirred."""
    h *= _GOLDEN
    return h ^ (h >> np.uint64(29))


@njit(nogil=True, cache=True, inline="always")
def _finish(h, length):
    """The word hash from the state after the last (partial) 8 bytes: murmur3's 64-bit finaliser."""
    h ^= np.uint64(length)
    h ^= h >> np.uint64(33)
    h *= _MURMUR_1
    h ^= h >> np.uint64(33)
    h *= _MURMUR_2
    return h ^ (h >> np.uint64(33))


BATCH = 32  # tokens scanned, hashed and their slots prefetched ahead of their look-ups, so the misses overlap


@njit(nogil=True, cache=True)
def encode(buf, pos, out, written, arena, offsets, slots, sizes, max_words):
    """Append the ids of buf[pos:]'s tokens (NEWLINE for each "\\n") to out int32 (>= B + 1,) from
    out[written], and count each token in its slot; a word not seen before becomes the next id. Tokens
    are cut at ASCII whitespace only: pass buf through wide_spaces_to_ascii first when it holds bytes
    >= 0xC2. Returns (pos, written, need), stopping before a new word when need is not 0: need > 0 (the
    word's length) when the arrays are full (grow them, call again), -1 when the table holds max_words
    words (forget some, call again).

    Tokens are taken BATCH at a time: first each one's bounds and hash, and a prefetch of its first slot,
    so that the memory fetches of a batch run together; then the look-ups, one by one, in order."""
    n, shift, mask = buf.shape[0], shift_of(slots.shape[0]), slots.shape[0] - 1
    starts = np.empty(BATCH, dtype=np.int64)  # -1: a line end
    stops = np.empty(BATCH, dtype=np.int64)
    hashes = np.empty(BATCH, dtype=np.uint64)
    packs = np.empty(BATCH, dtype=np.int64)
    while pos < n:
        count = 0
        while count < BATCH and pos < n:
            b = buf[pos]
            if _SPACE[b]:
                if b == 10:
                    starts[count] = -1
                    stops[count] = pos + 1
                    count += 1
                pos += 1
                continue
            end = pos + 1
            h, chunk, filled = np.uint64(0), np.uint64(b), 8  # chunk: the last (up to) 8 bytes, filled bits
            while end < n and not _SPACE[buf[end]]:
                if filled == 64:
                    h = _mix(h ^ chunk)
                    chunk, filled = np.uint64(0), 0
                chunk |= np.uint64(buf[end]) << np.uint64(filled)
                filled += 8
                end += 1
            packed = np.int64(chunk) if end - pos <= INLINE else np.int64(0)
            h = _finish(h ^ chunk, end - pos)
            starts[count], stops[count], hashes[count], packs[count] = pos, end, h, packed
            prefetch(slots, (home(h, shift), 0))
            count += 1
            pos = end
        for i in range(count):
            start, end = starts[i], stops[i]
            if start < 0:
                out[written] = NEWLINE
                written += 1
                continue
            h = hashes[i]
            slot = _find(buf, start, end, h, packs[i], arena, slots, mask, shift)
            if slots[slot, ID] == EMPTY:
                w, used, length = sizes[0], sizes[1], end - start
                if w >= max_words:
                    return start, written, -1
                if used + length > arena.shape[0] or w + 2 > offsets.shape[0] or 4 * (w + 1) > 3 * slots.shape[0]:
                    return start, written, length
                arena[used:used + length] = buf[start:end]
                offsets[w + 1] = used + length
                slots[slot, HASH], slots[slot, ID], slots[slot, COUNT] = np.int64(h), w | (length << 32), 0
                slots[slot, AT] = packs[i] if length <= INLINE else used
                sizes[0], sizes[1] = w + 1, used + length
            slots[slot, COUNT] += 1
            out[written] = slots[slot, ID] & _LOW
            written += 1
    return pos, written, 0


@njit(nogil=True, cache=True)
def rehash(slots, new_slots):
    """Insert the rows of slots (S, 4) into new_slots (S', 4), which is empty and large enough."""
    shift, mask = shift_of(new_slots.shape[0]), new_slots.shape[0] - 1
    for row in range(slots.shape[0]):
        if slots[row, ID] != EMPTY:
            slot = home(np.uint64(slots[row, HASH]), shift)
            while new_slots[slot, ID] != EMPTY:
                slot = (slot + 1) & mask
            new_slots[slot] = slots[row]


@njit(nogil=True, cache=True)
def counts_of(slots, n_words):
    """int64 (n_words,): the count of each word id."""
    counts = np.zeros(n_words, dtype=np.int64)
    for row in range(slots.shape[0]):
        if slots[row, ID] != EMPTY:
            counts[slots[row, ID] & _LOW] = slots[row, COUNT]
    return counts


@njit(nogil=True, cache=True)
def forget(arena, offsets, slots, sizes, min_reduce):
    """word2vec's ReduceVocab: forget the words counted at most min_reduce times. The others keep their
    order and counts and take the ids 0..k-1; returns int32 (W + 1,): old id -> new id, -1 when
    forgotten, and -1 at W (so that a -1 already in an id array maps to -1)."""
    n_words = sizes[0]
    rows = rows_by_id(slots, n_words)
    mapping = np.full(n_words + 1, -1, dtype=np.int32)
    kept = used = 0
    for w in range(n_words):
        if rows[w, COUNT] > min_reduce:
            lo, length = offsets[w], rows[w, ID] >> 32
            for k in range(length):  # (moves bytes down only: used <= lo)
                arena[used + k] = arena[lo + k]
            offsets[kept] = used
            rows[kept, HASH], rows[kept, ID] = rows[w, HASH], kept | (length << 32)
            rows[kept, COUNT] = rows[w, COUNT]
            rows[kept, AT] = rows[w, AT] if length <= INLINE else used
            mapping[w] = kept
            kept += 1
            used += length
    offsets[kept] = used
    slots[:, ID] = EMPTY
    rehash(rows[:kept], slots)
    sizes[0], sizes[1] = kept, used
    return mapping


@njit(nogil=True, cache=True)
def merge(arena, offsets, slots, sizes, other_arena, other_offsets, other_rows, start, mapping):
    """Add the words other_rows[start:] (slot rows by id of a second table, with their counts) into this
    table; mapping int32 (>= W2,) gets each one's id here. Returns (next start, need): need > 0 when this
    table's arrays are full (grow them, call again)."""
    shift, mask = shift_of(slots.shape[0]), slots.shape[0] - 1
    n_other = other_rows.shape[0]
    for w in range(start, n_other):
        if w + MERGE_AHEAD < n_other:  # the hashes are known: fetch a later word's home slot now
            prefetch(slots, (home(np.uint64(other_rows[w + MERGE_AHEAD, HASH]), shift), 0))
        lo, length = other_offsets[w], other_rows[w, ID] >> 32
        h, packed = np.uint64(other_rows[w, HASH]), other_rows[w, AT]
        slot = _find(other_arena, lo, lo + length, h, packed, arena, slots, mask, shift)
        if slots[slot, ID] == EMPTY:
            new, used = sizes[0], sizes[1]
            if used + length > arena.shape[0] or new + 2 > offsets.shape[0] or 4 * (new + 1) > 3 * slots.shape[0]:
                return w, length
            arena[used:used + length] = other_arena[lo:lo + length]
            offsets[new + 1] = used + length
            slots[slot, HASH], slots[slot, ID], slots[slot, COUNT] = other_rows[w, HASH], new | (length << 32), 0
            slots[slot, AT] = packed if length <= INLINE else used
            sizes[0], sizes[1] = new + 1, used + length
        slots[slot, COUNT] += other_rows[w, COUNT]
        mapping[w] = slots[slot, ID] & _LOW
    return other_rows.shape[0], 0


@njit(nogil=True, cache=True)
def rows_by_id(slots, n_words):
    """int64 (n_words, 4): the slot row of each word id."""
    rows = np.empty((n_words, 4), dtype=np.int64)
    for row in range(slots.shape[0]):
        if slots[row, ID] != EMPTY:
            rows[slots[row, ID] & _LOW] = slots[row]
    return rows


@njit(nogil=True, cache=True)
def split_sentences(ids, n, limit, state, ends, n_ends):
    """Drop the NEWLINEs of ids[:n] in place and append to ends int64 where sentences end: at each line
    end, and every ``limit`` tokens of a line. Positions count the segment's tokens. state int64 (4,):
    [tokens so far, tokens of the open line, first line open (1: a segment after the first, whose first
    line may continue the previous segment's last one, so is not cut here), where the first line ended
    (-1: not yet)]. Returns (tokens kept in ids, n_ends)."""
    kept = 0
    for i in range(n):
        w = ids[i]
        if w == NEWLINE:
            if state[2]:
                state[2], state[3] = 0, state[0]
            elif state[1] > 0:
                ends[n_ends] = state[0]
                n_ends += 1
            state[1] = 0
            continue
        ids[kept] = w
        kept += 1
        state[0] += 1
        state[1] += 1
        if state[1] == limit and not state[2]:
            ends[n_ends] = state[0]
            n_ends += 1
            state[1] = 0
    return kept, n_ends


@njit(nogil=True, cache=True)
def apply_mapping(ids, mapping):
    """ids[i] = mapping[ids[i]] in place for int32 ids, where -1 indexes mapping's last entry."""
    last = mapping.shape[0] - 1
    for i in range(ids.shape[0]):
        w = ids[i]
        ids[i] = mapping[last if w < 0 else w]


@njit(nogil=True, cache=True)
def non_ascii_words(arena, offsets, n_words):
    """bool (n_words,): which words hold a byte >= 0x80 (only those can be invalid UTF-8)."""
    found = np.zeros(n_words, dtype=np.bool_)
    for w in range(n_words):
        for k in range(offsets[w], offsets[w + 1]):
            if arena[k] >= 0x80:
                found[w] = True
                break
    return found


@njit(nogil=True, cache=True)
def keep_known(ids, lookup, start, out, written, ends, done, kept_at):
    """Append lookup[ids[i]] (-1 indexes lookup's last entry) to out int32 from out[written], leaving out
    the -1s; ids[0] is token ``start`` of the text. For each sentence end ends[done:] (increasing raw
    positions) reached, kept_at gets how many tokens were kept before it. Returns (written, done)."""
    last = lookup.shape[0] - 1
    for i in range(ids.shape[0]):
        w = ids[i]
        final = lookup[last if w < 0 else w]
        if final >= 0:
            out[written] = final
            written += 1
        while done < ends.shape[0] and ends[done] == start + i + 1:
            kept_at[done] = written
            done += 1
    return written, done


@njit(nogil=True, cache=True)
def word_keys(arena, offsets, ids):
    """uint64 (n, 2): the first 16 bytes of each word ids[i], big-endian and zero-padded, so that the rows
    compare as the words' bytes do (up to words that share those 16 bytes, or differ only by NULs)."""
    keys = np.zeros((ids.shape[0], 2), dtype=np.uint64)
    for i in range(ids.shape[0]):
        lo, hi = offsets[ids[i]], offsets[ids[i] + 1]
        for k in range(min(hi - lo, 16)):
            keys[i, k >> 3] |= np.uint64(arena[lo + k]) << np.uint64(56 - 8 * (k & 7))
    return keys


@njit(nogil=True, cache=True)
def joined_words(arena, offsets, ids):
    """uint8: the bytes of the words ids, in that order, each followed by "\\n" (which no word holds)."""
    total = 0
    for i in range(ids.shape[0]):
        total += offsets[ids[i] + 1] - offsets[ids[i]] + 1
    out = np.empty(total, dtype=np.uint8)
    at = 0
    for i in range(ids.shape[0]):
        for k in range(offsets[ids[i]], offsets[ids[i] + 1]):
            out[at] = arena[k]
            at += 1
        out[at] = 10
        at += 1
    return out

