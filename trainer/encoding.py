"""The first pass behind encode_corpus: bytes -> provisional ids and counts (compiled, a thread per span of
the file), then one word table, the vocabulary, and final ids by array lookup."""
from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np

from trainer import token_kernels as kernels
from trainer.reader import byte_pieces, compression, progress_bar, span_pieces, split_points
from trainer.vocab import Vocabulary, too_rare


def cut_lines(starts: np.ndarray, ends: np.ndarray, limit: int) -> np.ndarray:
    """Ends int64 (P,) of the pieces of at most ``limit`` tokens that lines [starts, ends) are cut into."""
    pieces = -(-(ends - starts) // limit)  # ceiling division; empty lines give no piece
    first = np.repeat(np.cumsum(pieces) - pieces, pieces)
    within = np.arange(int(pieces.sum()), dtype=np.int64) - first
    return np.minimum(np.repeat(starts, pieces) + (within + 1) * limit, np.repeat(ends, pieces))


class IdSink:
    """Provisional int32 ids, chunk by chunk: in RAM, or in a raw file once large or when a workdir is given."""

    def __init__(self, workdir: Path | None, spill_at: int) -> None:
        self.workdir, self.spill_at, self.chunks, self.size = workdir, spill_at, [], 0
        self.file: IO[bytes] | None = None
        self.path: Path | None = None
        if workdir is not None:
            self._spill()

    def append(self, ids: np.ndarray) -> None:
        """Keep int32 (n,) ids after those already held."""
        self.size += len(ids)
        if self.file is None and self.size > self.spill_at:
            self._spill()
        if self.file is None:
            self.chunks.append(ids)
        else:
            self.file.write(memoryview(ids))

    def _spill(self) -> None:
        if self.workdir is None:
            self.file = tempfile.TemporaryFile(prefix="skipgram-ids-")
        else:
            handle, name = tempfile.mkstemp(prefix=".provisional-ids-", suffix=".i32", dir=self.workdir)
            self.path, self.file = Path(name), os.fdopen(handle, "w+b")
        for chunk in self.chunks:
            self.file.write(memoryview(chunk))
        self.chunks = []

    def drain(self, block: int = 1 << 22) -> Iterator[np.ndarray]:
        """The ids in corpus order, as int32 arrays, once: chunks held in memory are released as they are
        handed out."""
        if self.file is None:
            self.chunks.reverse()
            while self.chunks:
                yield self.chunks.pop()
            return
        self.file.flush()
        ids = np.memmap(self.file, dtype=np.int32, mode="r", shape=(self.size,))
        for start in range(0, self.size, block):
            yield ids[start:start + block]

    def rewrite(self, mapping: np.ndarray) -> None:
        """ids[i] = mapping[ids[i]] for every id held, where -1 indexes mapping's last entry."""
        if self.file is None:
            for chunk in self.chunks:
                kernels.apply_mapping(chunk, mapping)
            return
        self.file.flush()
        ids = np.memmap(self.file, dtype=np.int32, mode="r+", shape=(self.size,))
        kernels.apply_mapping(ids, mapping)
        ids.flush()
        del ids
        self.file.seek(0, os.SEEK_END)

    def close(self) -> None:
        """Release the ids (and delete their file)."""
        if self.file is not None:
            self.file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


MAX_EXPECTED_WORDS = 1 << 20  # a table is made for at most this many words at first (64 MiB of rows)
BYTES_PER_NEW_WORD = 64  # a large text holds about one word type per this many bytes (grown if more)


def tokenizable(piece: bytes) -> np.ndarray:
    """uint8 (B,) of a piece of text for WordTable.encode: non-ASCII whitespace made ASCII spaces."""
    buf = np.frombuffer(piece, dtype=np.uint8)
    if np.any(buf >= 0xC2):  # a character that may be non-ASCII whitespace
        buf = kernels.wide_spaces_to_ascii(buf)
    return buf


class WordTable:
    """The distinct tokens of a text as bytes, each with its id and count, in arrays the kernels read
    and grow (see trainer.token_kernels)."""

    INITIAL_WORDS = 1 << 16  # words held before the arrays first grow, at least

    def __init__(self, expected_words: int = 0) -> None:
        words = 1 << max(self.INITIAL_WORDS.bit_length() - 1, min(expected_words, MAX_EXPECTED_WORDS).bit_length())
        self.arena = np.empty(16 * words, dtype=np.uint8)  # (A,) the words' bytes, one after another
        self.offsets = np.zeros(words, dtype=np.int64)  # (>= W+1,) word w is arena[offsets[w]:offsets[w+1]]
        self.slots = np.full((words, 4), kernels.EMPTY, dtype=np.int64)  # (S, 4) hash table rows
        self.sizes = np.zeros(2, dtype=np.int64)  # [W, bytes of arena used]

    def __len__(self) -> int:
        return int(self.sizes[0])

    def encode(self, buf: np.ndarray, out: np.ndarray, pos: int = 0, written: int = 0,
               max_words: int = 1 << 31) -> tuple[int, int]:
        """Ids of the tokens of buf[pos:] (a tokenizable piece) into out int32 (>= B+1,) from out[written],
        NEWLINE for each "\\n", each token counted. Returns (pos, written): pos < B when a new word came
        while the table holds max_words words (forget some, call again)."""
        while True:
            pos, written, need = kernels.encode(buf, pos, out, written, self.arena, self.offsets, self.slots,
                                                self.sizes, max_words)
            if need <= 0:
                return pos, written
            self._make_room(need)

    def add(self, words: list[bytes]) -> np.ndarray:
        """int64 (n,): the ids of words (tokens without whitespace), each added if new."""
        out = np.empty(sum(map(len, words)) + len(words) + 1, dtype=np.int32)
        if self.encode(np.frombuffer(b" ".join(words), dtype=np.uint8), out)[1] != len(words):
            raise ValueError("a word to add holds whitespace or is empty")
        return out[:len(words)].astype(np.int64)

    def bytes_of(self, ids: np.ndarray) -> list[bytes]:
        arena = memoryview(self.arena)
        return [bytes(arena[lo:hi]) for lo, hi in zip(self.offsets[ids].tolist(), self.offsets[ids + 1].tolist())]

    def texts_of(self, ids: np.ndarray) -> list[str]:
        """The words ids as str, from UTF-8 with U+FFFD for invalid bytes."""
        arena = memoryview(self.arena)
        return [str(arena[lo:hi], "utf-8", "replace")
                for lo, hi in zip(self.offsets[ids].tolist(), self.offsets[ids + 1].tolist())]

    def counts(self) -> np.ndarray:
        """int64 (W,): how many times each word was counted."""
        return kernels.counts_of(self.slots, len(self))

    def forget(self, min_reduce: int) -> np.ndarray:
        """Forget the words counted at most min_reduce times (the others take ids 0..k-1 in order);
        returns int32 (W + 1,): old id -> new id or -1, and -1 for -1 (the last entry)."""
        return kernels.forget(self.arena, self.offsets, self.slots, self.sizes, min_reduce)

    def merge(self, other: WordTable) -> np.ndarray:
        """Add another table's words and counts; returns int32 (W2 + 1,): its ids -> ids here, -1 -> -1."""
        rows = kernels.rows_by_id(other.slots, len(other))
        mapping = np.full(len(other) + 1, -1, dtype=np.int32)
        start = 0
        while True:
            start, need = kernels.merge(self.arena, self.offsets, self.slots, self.sizes, other.arena,
                                        other.offsets, rows, start, mapping)
            if not need:
                return mapping
            self._make_room(need)

    def _make_room(self, need: int) -> None:
        n, used = len(self), int(self.sizes[1])
        if used + need > len(self.arena):
            self.arena = _grown(self.arena, max(2 * len(self.arena), used + need))
        if n + 2 > len(self.offsets):
            self.offsets = _grown(self.offsets, 2 * len(self.offsets))
        if 4 * (n + 1) > 3 * len(self.slots):
            slots = np.full((2 * len(self.slots), 4), kernels.EMPTY, dtype=np.int64)
            kernels.rehash(self.slots, slots)
            self.slots = slots


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    grown = np.zeros(size, dtype=array.dtype)
    grown[:len(array)] = array
    return grown


class Segment:
    """One stretch of the text, read by one thread: its word table, its provisional ids (in a sink) and
    where its sentences end. Memory is bounded: when a new word comes while ``max_types`` are held, the
    words counted at most min_reduce times are forgotten (word2vec's ReduceVocab; min_reduce then grows
    by one), and the ids already read follow (forgotten ones become -1)."""

    def __init__(self, sink: IdSink, limit: int, max_types: int, first: bool, size: int = 0) -> None:
        self.sink, self.limit, self.max_types = sink, limit, max_types
        # size: of the text, in bytes; the table is released (None) once merged into another
        self.table: WordTable | None = WordTable(min(size // BYTES_PER_NEW_WORD, max_types))
        # [tokens so far, tokens of the open line, first line open, where the first line ended]
        self.state = np.array([0, 0, 0 if first else 1, -1], dtype=np.int64)
        self.ends: list[np.ndarray] = []  # int64 positions in the segment where sentences end
        self.out = np.empty(0, dtype=np.int32)
        self.min_reduce, self.pruned_types, self.prunings = 1, 0, 0

    def feed(self, piece: bytes) -> None:
        """Take a piece of text that ends at whitespace (its last line may go on in the next piece)."""
        buf = tokenizable(piece)
        if len(self.out) < len(buf) + 1:
            self.out = np.empty(len(buf) + 1, dtype=np.int32)
        pos = written = 0
        while True:
            pos, written = self.table.encode(buf, self.out, pos, written, self.max_types)
            if pos == len(buf):
                break
            self._keep(written)
            written = 0
            while len(self.table) >= self.max_types:
                self._forget()
        self._keep(written)

    def _keep(self, written: int) -> None:
        ends = np.empty(written + 1, dtype=np.int64)
        kept, n_ends = kernels.split_sentences(self.out, written, self.limit, self.state, ends, 0)
        self.sink.append(self.out[:kept].copy())
        if n_ends:
            self.ends.append(ends[:n_ends])

    def _forget(self) -> None:
        before = len(self.table)
        mapping = self.table.forget(self.min_reduce)
        if len(self.table) < before:  # (else the ids are unchanged)
            self.sink.rewrite(mapping)
        self.pruned_types += before - len(self.table)
        self.prunings += 1
        self.min_reduce += 1

    @property
    def tokens(self) -> int:
        return int(self.state[0])


def read_segments(path: Path, make_sink: Callable[[], IdSink], limit: int, max_types: int, workers: int,
                  chunk_bytes: int, progress: bool) -> list[Segment]:
    """The first pass: a plain file cut into up to ``workers`` spans read by as many threads (the kernels
    release the GIL), a compressed one in one stream. Raises CorpusError."""
    if compression(path) != "plain" or workers < 2:
        segment = Segment(make_sink(), limit, max_types, first=True, size=path.stat().st_size)
        for piece in byte_pieces(path, chunk_bytes, progress):
            segment.feed(piece)
        return [segment]
    points = split_points(path, workers)
    segments = [Segment(make_sink(), limit, max_types, first=i == 0, size=points[i + 1] - points[i])
                for i in range(len(points) - 1)]
    stop = threading.Event()

    def read(i: int, bar: Any) -> None:
        advance = None if bar is None else bar.update
        for piece in span_pieces(path, points[i], points[i + 1], chunk_bytes, advance):
            if stop.is_set():
                return
            segments[i].feed(piece)

    with progress_bar(progress, points[-1], path.name) as bar, ThreadPoolExecutor(len(segments)) as pool:
        futures = [pool.submit(read, i, bar) for i in range(len(segments))]
        try:
            for future in futures:
                future.result()
        finally:
            stop.set()
    return segments


def merge_segments(segments: list[Segment]) -> tuple[WordTable, list[np.ndarray], list[np.ndarray], dict[str, int]]:
    """One word table for all segments (the first's, with the others' words and counts added, then
    bounded again), each segment's map from its ids to the table's (int32, -1 -> -1), the counts of each
    later segment's own words (int64, by its ids; for remap), and the pruning counts. The later segments'
    tables are released (``table`` None): only their counts are needed after this."""
    table = segments[0].table
    maps = [np.append(np.arange(len(table), dtype=np.int32), np.int32(-1))]
    maps += [table.merge(segment.table) for segment in segments[1:]]
    own_counts = [segment.table.counts() for segment in segments[1:]]
    for segment in segments[1:]:
        segment.table = None
    stats = {"pruned_types": sum(s.pruned_types for s in segments), "prunings": sum(s.prunings for s in segments)}
    min_reduce = max(s.min_reduce for s in segments)
    while len(table) > segments[0].max_types:
        before = len(table)
        mapping = table.forget(min_reduce)
        maps = [mapping[m] for m in maps]
        stats["pruned_types"] += before - len(table)
        stats["prunings"] += 1
        min_reduce += 1
    return table, maps, own_counts, stats


def sentence_ends(segments: list[Segment]) -> np.ndarray:
    """int64 (R,): the increasing positions in the whole text where sentences end. A segment's first
    line may continue the previous segment's last one: such a line is cut here, where its start is known."""
    parts: list[np.ndarray] = []
    offset, open_start = 0, None  # open_start: where a line that is still open began
    for segment in segments:
        tokens, open_tokens, first_open, first_end = segment.state.tolist()
        own = [offset + ends for ends in segment.ends]
        if first_open or first_end >= 0:  # a later segment: its first line joins the open one
            start = offset if open_start is None else open_start
            if first_open:  # no line ended in this segment
                open_start = start
                offset += tokens
                continue
            parts.append(cut_lines(np.array([start]), np.array([offset + first_end]), segment.limit))
        parts += own
        open_start = offset + tokens - open_tokens if open_tokens else None
        offset += tokens
    if open_start is not None and open_start < offset:
        parts.append(cut_lines(np.array([open_start]), np.array([offset]), segments[-1].limit))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def vocabulary(table: WordTable, min_count: int, max_vocab: int | None) -> tuple[Vocabulary, np.ndarray, int]:
    """The vocabulary of a table's words, ``lookup`` int32 (W + 1,): table id -> vocabulary id, -1 when
    dropped (and for -1), and the number of distinct types. Words are decoded as UTF-8 with U+FFFD for
    invalid bytes, so byte strings that decode alike are one type, counted together."""
    counts = table.counts()
    maybe_merged = kernels.non_ascii_words(table.arena, table.offsets, len(table))
    candidates = np.flatnonzero((counts >= max(min_count, 1)) | maybe_merged)
    totals, members = counts[candidates], np.arange(len(candidates))
    non_ascii = np.flatnonzero(maybe_merged[candidates])
    texts = dict(zip(non_ascii.tolist(), table.texts_of(candidates[non_ascii])))  # (only these can merge)
    merged = 0
    if texts:
        first: dict[str, int] = {}
        for i, text in texts.items():
            members[i] = first.setdefault(text, i)
        duplicate = members != np.arange(len(candidates))
        merged = int(duplicate.sum())
        if merged:
            totals = np.bincount(members, weights=totals, minlength=len(candidates)).astype(np.int64)
            totals[duplicate] = 0  # (counted in their first)
    if not len(totals) or totals.max() < min_count:
        raise too_rare(min_count, len(table) - merged, int(max(counts.max(), totals.max(initial=0))))
    positions = _ranked(table, candidates, totals, min_count, texts)[:max_vocab]
    joined = kernels.joined_words(table.arena, table.offsets, candidates[positions])
    words = joined.tobytes().decode("utf-8", "replace").split("\n")[:-1]  # as texts_of decodes each word
    vocab = Vocabulary(words=tuple(words), counts=totals[positions])
    final = np.full(len(candidates), -1, dtype=np.int32)
    final[positions] = np.arange(len(vocab), dtype=np.int32)
    lookup = np.full(len(table) + 1, -1, dtype=np.int32)
    lookup[candidates] = final[members]
    return vocab, lookup, len(table) - merged


def _ranked(table: WordTable, candidates: np.ndarray, totals: np.ndarray, min_count: int,
            texts: dict[int, str]) -> np.ndarray:
    """Positions in ``candidates`` of the words counted at least min_count times (``totals``), by count
    descending, then by word as str compares them. UTF-8 orders bytes as their code points, so the words'
    bytes are compared (16 at a time, as integers), except for a word with invalid bytes, which takes the
    bytes of its decoded text (``texts``: position -> text of the non-ASCII words); words that share the
    16 bytes compared are then ordered by their texts."""
    kept = np.flatnonzero(totals >= max(min_count, 1))
    keys = kernels.word_keys(table.arena, table.offsets, candidates[kept])
    invalid = [p for p, text in texts.items() if "\ufffd" in text and totals[p] >= max(min_count, 1)]
    for p, row in zip(invalid, np.searchsorted(kept, invalid).tolist()):
        head = texts[p].encode("utf-8")[:16].ljust(16, b"\0")
        keys[row] = int.from_bytes(head[:8], "big"), int.from_bytes(head[8:], "big")
    order = np.lexsort((keys[:, 1], keys[:, 0], -totals[kept]))
    ranked = np.column_stack((totals[kept][order], keys[order].view(np.int64)))
    same = (ranked[1:] == ranked[:-1]).all(axis=1)  # row i ties with row i + 1
    edges = np.flatnonzero(np.diff(np.concatenate(([0], same.view(np.int8), [0]))))
    for first, last in zip(edges[::2].tolist(), edges[1::2].tolist()):  # a run of ties: by the words' texts
        run = order[first:last + 1]
        run_texts = table.texts_of(candidates[kept[run]])
        order[first:last + 1] = run[sorted(range(len(run)), key=run_texts.__getitem__)]
    return kept[order]


def remap(segments: list[Segment], finals: list[np.ndarray], own_counts: list[np.ndarray], ends: np.ndarray,
          out: np.ndarray) -> np.ndarray:
    """The kept tokens into ``out`` int32 (T,), a thread per segment; returns sentence_starts int64 (S+1,).

    ``finals`` int32 (W + 1,) map each segment's provisional ids to final ids, -1 for a dropped token (and
    for -1). Each segment writes where the kept tokens of those before it end: a later segment keeps as many
    tokens as its ``own_counts`` (by its ids; see merge_segments) give its words kept, and the first what
    remains of ``out``. ``ends`` int64
    (R,) are the increasing raw positions where sentences end; sentences left empty vanish.
    """
    kept = [0] + [int(counts[final[:-1] >= 0].sum()) for counts, final in zip(own_counts, finals[1:])]
    kept[0] = len(out) - sum(kept)
    written_before = np.concatenate(([0], np.cumsum(kept)))
    raw_before = np.concatenate(([0], np.cumsum([s.tokens for s in segments])))
    bounds = np.searchsorted(ends, raw_before, side="right")  # segment i's ends: ends[bounds[i]:bounds[i+1]]
    kept_at = np.empty(len(ends), dtype=np.int64)  # kept tokens before each raw sentence end

    def run(i: int) -> None:
        own_ends, own_kept_at = ends[bounds[i]:bounds[i + 1]], kept_at[bounds[i]:bounds[i + 1]]
        start, written, done = int(raw_before[i]), int(written_before[i]), 0
        for ids in segments[i].sink.drain():
            written, done = kernels.keep_known(ids, finals[i], start, out, written, own_ends, done, own_kept_at)
            start += len(ids)
        if written != written_before[i + 1] or done != len(own_ends):
            raise RuntimeError(f"segment {i} kept {written - written_before[i]} tokens and {done} sentence "
                               f"ends, its table counts {kept[i]} and {len(own_ends)}")

    if len(segments) == 1:
        run(0)
    else:
        with ThreadPoolExecutor(len(segments)) as pool:
            list(pool.map(run, range(len(segments))))
    lengths = np.diff(kept_at, prepend=0)
    return np.concatenate(([0], np.cumsum(lengths[lengths > 0]))).astype(np.int64)


def allocate_tokens(size: int, file: Path | None, large: bool) -> np.ndarray:
    """int32 (size,) for the final ids: a .npy memmap at ``file``, an anonymous memmap if large, or RAM."""
    if file is not None:
        return np.lib.format.open_memmap(file, mode="w+", dtype=np.int32, shape=(size,))
    if large:
        with tempfile.TemporaryFile(prefix="skipgram-tokens-") as file:  # the mapping outlives the file
            return np.memmap(file, dtype=np.int32, mode="w+", shape=(size,))
    return np.empty(size, dtype=np.int32)
