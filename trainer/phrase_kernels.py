"""Numba kernels of phrase detection over word ids (from trainer.token_kernels): word-pair counts,
joining pairs, ids -> bytes.

Conventions shared by the kernels:
  ids     int32 (T,)   the corpus as word ids in order, NEWLINE (-1) for each line break, as word2phrase
                       reads "</s>" for each newline
  words   arena uint8 (A,), offsets int64 (W+1,): word w is the bytes arena[offsets[w]:offsets[w+1]]
  keys    int64 (C,)   a pair of word ids (a, b) as a << 32 | b, or EMPTY; counts int64 (C,) their counts
Tables are powers of two probed from a Fibonacci hash; the caller grows them (rehash) before they fill.
"""
from __future__ import annotations

import numpy as np

from trainer.jit import njit
from trainer.token_kernels import EMPTY, NEWLINE, home as _home, shift_of


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
    shift, mask = shift_of(keys.shape[0]), keys.shape[0] - 1
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
    shift, mask = shift_of(new_keys.shape[0]), new_keys.shape[0] - 1
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
    shift, mask = shift_of(phrase_keys.shape[0]), phrase_keys.shape[0] - 1
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
