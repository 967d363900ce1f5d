"""Corpora -> integer-encoded arrays (ids of in-vocabulary tokens, sentence offsets), and the corpus command."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.encoding import FirstPass, IdSink, allocate_tokens, remap
from trainer.reader import CHUNK_BYTES, CorpusError, check_corpus, text_pieces
from trainer.vocab import Vocabulary, VocabularyError
from trainer.wikitext import clean_wiki_dump

__all__ = ["CorpusError", "EncodedCorpus", "clean_wiki_dump", "encode_corpus", "add_corpus_arguments",
           "run_corpus"]

SPILL_TOKENS = 50_000_000  # beyond this many tokens the id arrays move from RAM to memory-mapped files
TOKENS_FILE = "corpus-tokens.npy"  # the final ids inside a workdir


@dataclass(frozen=True, eq=False)
class EncodedCorpus:
    """A corpus as integer ids: sentence s is ``tokens[sentence_starts[s]:sentence_starts[s + 1]]``.

    ``tokens`` int32 (T,) holds vocabulary ids of the in-vocabulary tokens in corpus order (others dropped);
    ``sentence_starts`` int64 (S+1,) starts at 0 and ends at T, with no empty sentence;
    ``raw_tokens`` counts every token read; ``stats`` holds plain ints (JSON-serialisable).
    """

    vocab: Vocabulary
    tokens: np.ndarray
    sentence_starts: np.ndarray
    raw_tokens: int
    stats: dict[str, int]


def encode_corpus(path: str | os.PathLike[str], min_count: int = 5, max_vocab: int | None = None,
                  max_sentence_length: int = 10_000, max_types: int = 10_000_000,
                  workdir: str | os.PathLike[str] | None = None, progress: bool = False,
                  chunk_bytes: int = CHUNK_BYTES) -> EncodedCorpus:
    """Read a corpus once and return it as vocabulary ids with sentence offsets.

    Each token gets a provisional id as it is read (counted per chunk); once the vocabulary is known a
    lookup array turns provisional ids into final ones and drops the rest. Lines are sentences, cut every
    ``max_sentence_length`` raw tokens. With ``workdir`` (or beyond SPILL_TOKENS tokens) the id arrays are
    memory-mapped files instead of RAM; ``workdir`` then holds TOKENS_FILE. Raises CorpusError.
    """
    if max_sentence_length < 1:
        raise ValueError(f"max_sentence_length must be at least 1, got {max_sentence_length}")
    size = check_corpus(path)
    with _workspace(workdir) as folder:
        first = FirstPass(IdSink(folder, SPILL_TOKENS), max_sentence_length, max_types)
        vocab, tokens, starts = _encode(path, first, min_count, max_vocab, folder, progress, chunk_bytes)
    stats = {"raw_tokens": first.position, "kept_tokens": len(tokens), "sentences": len(starts) - 1,
             "types_seen": len(first.ids), "pruned_types": first.pruned_types, "prunings": first.prunings,
             "vocab_size": len(vocab), "input_bytes": size}
    return EncodedCorpus(vocab, tokens, starts, first.position, stats)


@contextmanager
def _workspace(workdir: str | os.PathLike[str] | None) -> Iterator[Path | None]:
    """The workdir as a Path (created if need be, and removed again if it was created for a failed run)."""
    if workdir is None:
        yield None
        return
    folder = Path(workdir)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CorpusError(f"cannot create workdir {folder}: {error.strerror or error}") from None
    try:
        yield folder
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise


def _encode(path: str | os.PathLike[str], first: FirstPass, min_count: int, max_vocab: int | None,
            folder: Path | None, progress: bool, chunk_bytes: int) -> tuple[Vocabulary, np.ndarray, np.ndarray]:
    """The pass over the text, then the vocabulary, then the final ids: (vocab, tokens, sentence_starts)."""
    target = None if folder is None else folder / TOKENS_FILE
    try:
        for text in text_pieces(path, chunk_bytes, progress):
            first.feed(text)
        first.finish()
        if first.position == 0:
            raise CorpusError(f"corpus is empty (no tokens): {path}")
        try:
            vocab, lookup = first.vocabulary(min_count, max_vocab)
        except VocabularyError as error:
            raise CorpusError(f"{path}: {error}") from None
        tokens = allocate_tokens(int(vocab.counts.sum()), target, first.sink.file is not None)
        try:
            starts = remap(first.sink.blocks(), lookup, np.concatenate(first.ends), tokens)
        except BaseException:
            if target is not None:
                target.unlink(missing_ok=True)
            raise
    finally:
        first.sink.close()
    if target is not None:
        tokens.flush()
        tokens = np.load(target, mmap_mode="r")
    return vocab, tokens, starts


def add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    """``corpus wiki DUMP OUT`` and ``corpus stats CORPUS``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    wiki = actions.add_parser("wiki", help="turn a MediaWiki XML dump into text, one article per line",
                              description="Clean a MediaWiki XML export (.xml, .xml.bz2, .xml.gz) into "
                                          "lowercase words a-z, one article per line (wikifil style).")
    wiki.add_argument("dump", help="the dump: .xml, .xml.bz2 or .xml.gz")
    wiki.add_argument("out", help="the text file to write (replaced atomically)")
    wiki.add_argument("--quiet", action="store_true", help="no progress bar")
    stats = actions.add_parser("stats", help="count a corpus: tokens, sentences, types, vocabulary size",
                               description="Read a corpus once and print its counts.")
    stats.add_argument("corpus", help="plain text, text8-style single line, or either as .gz/.bz2")
    stats.add_argument("--min-count", type=_positive, default=5, help="words rarer than this are dropped (default 5)")
    stats.add_argument("--max-sentence-length", type=_positive, default=10_000,
                       help="lines are cut into sentences of at most this many tokens (default 10000)")
    stats.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_phrases_arguments(actions.add_parser(
        "phrases", help="join frequent word pairs into one token (new york -> new_york), as word2phrase does",
        description="Count the words and word pairs of a corpus, score each pair with word2phrase's formula "
                    "(or npmi), and write the corpus with the pairs that score above the threshold joined, "
                    "left to right, as word2phrase does; the phrase table goes beside OUT as "
                    "OUT.phrases.tsv. Errors print 'error: ...', give exit code 1 and write nothing."))


def _add_phrases_arguments(phrases: argparse.ArgumentParser) -> None:
    """Numbers are parsed by the command, so that a bad one gets its message and exit code 1 too."""
    from trainer.phrase_table import DEFAULT_MAX_PAIRS, SCORINGS
    phrases.add_argument("corpus", help="plain text, text8-style single line, or either as .gz/.bz2")
    phrases.add_argument("out", help="the phrased text to write (replaced atomically; .gz/.bz2 compress it)")
    phrases.add_argument("--min-count", help="words and pairs counted fewer times are never joined (default 5)")
    phrases.add_argument("--threshold", help="join a pair when its score is above this (default 100; npmi "
                                             "scores lie in [-1, 1])")
    phrases.add_argument("--passes", help="pass k runs on the output of pass k - 1: 2 also finds trigrams "
                                          "and 4-grams (default 1)")
    phrases.add_argument("--later-threshold", help="threshold of the passes after the first (default: half "
                                                   "of --threshold for word2phrase scoring, as the word2vec "
                                                   "distribution's demo runs 200 then 100; the same for npmi)")
    phrases.add_argument("--delimiter", help="joins the two halves of a phrase (default _)")
    phrases.add_argument("--scoring", help=f"one of {', '.join(SCORINGS)}; word2phrase (default): (n_ab - "
                                           "min_count) / (n_a n_b) * total words; npmi: normalised pointwise "
                                           "mutual information, as gensim's")
    phrases.add_argument("--max-pairs", help="distinct pairs held at most; beyond, every pair and word counted "
                                             "at most k times is forgotten (k = 1, 2, ...: word2phrase's "
                                             f"pruning), and prunings are reported (default {DEFAULT_MAX_PAIRS:,}"
                                             ": a table of at most 512 MiB)")
    phrases.add_argument("--apply", metavar="TABLE", help="join the phrases of a saved table (an "
                                                          "OUT.phrases.tsv) instead of learning them")
    phrases.add_argument("--quiet", action="store_true", help="no progress bar")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run_corpus(args: argparse.Namespace) -> int:
    """Run a corpus action; a CorpusError prints ``error: MESSAGE`` on stderr and gives exit code 2
    (exit code 1 for ``phrases``)."""
    if args.action == "phrases":
        return _run_phrases(args)
    try:
        if args.action == "wiki":
            counts = clean_wiki_dump(args.dump, args.out, progress=not args.quiet)
            labels = {"pages": "pages read", "articles": "articles written", "words": "words written"}
        else:
            counts = encode_corpus(args.corpus, min_count=args.min_count, progress=not args.quiet,
                                   max_sentence_length=args.max_sentence_length).stats
            labels = {"raw_tokens": "raw tokens", "sentences": "sentences", "types_seen": "types",
                      "vocab_size": f"vocabulary (min-count {args.min_count})",
                      "kept_tokens": "tokens in vocabulary", "pruned_types": "pruned types"}
    except CorpusError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    width = max(map(len, labels.values()))
    for key, label in labels.items():
        print(f"{label:<{width}}  {counts[key]:>14,}")
    return 0


# The learning options of `corpus phrases`, which --apply (a table's phrases, joined as they are) excludes.
_LEARNING = ("min_count", "threshold", "passes", "later_threshold", "scoring", "max_pairs")


def _run_phrases(args: argparse.Namespace) -> int:
    """``corpus phrases``: learn a table (or read one with --apply), then write OUT and OUT.phrases.tsv.
    Every error prints ``error: MESSAGE``, gives exit code 1 and leaves no file behind."""
    from trainer import phrase_table
    from trainer.artifact import atomic_file
    from trainer.phrases import EncodedText

    out, progress = Path(args.out), not args.quiet
    table_out = phrase_table.table_path(out)
    try:
        if args.apply is None:
            config = phrase_table.config_from_strings(delimiter=args.delimiter,
                                                      **{name: getattr(args, name) for name in _LEARNING})
        else:
            given = [name for name in _LEARNING if getattr(args, name) is not None]
            if given:
                raise phrase_table.PhraseConfigError(f"--{given[0].replace('_', '-')} cannot be used with "
                                                     "--apply, which joins the table's phrases as they are")
            table = phrase_table.read_table(args.apply, args.delimiter or "_")
        _check_output(out, table_out)
        text = EncodedText(args.corpus, progress)
        if args.apply is None:
            table, passes = text.learn(config)
            joins = [record["joins"] for record in passes]
        else:
            passes, joins = [], text.apply(table)
        keep_table = args.apply is not None and table_out.exists() and table_out.samefile(args.apply)
        with (nullcontext() if keep_table else atomic_file(table_out)) as table_file, \
                atomic_file(out) as text_file:
            if table_file is not None:
                table_file.write(table.to_text().encode("utf-8"))
            text.write(text_file, out)
    except (CorpusError, phrase_table.PhraseConfigError, phrase_table.PhraseTableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: writing {out} failed: {error.strerror or error}; nothing was written", file=sys.stderr)
        return 1
    for record in passes:
        print(f"pass {record['pass']}: {record['tokens']:,} tokens, {record['words']:,} words and "
              f"{record['pairs']:,} pairs counted, {record['prunings']} prunings ({record['pruned_pairs']:,} "
              f"pairs forgotten); {record['phrases']:,} phrases score above {record['threshold']:g}, "
              f"joined {record['joins']:,} times")
    print(f"wrote {out}: {text.tokens():,} tokens ({sum(joins):,} pairs joined); "
          f"{table_out}: {len(table.phrases):,} phrases")
    return 0


def _check_output(out: Path, table_out: Path) -> None:
    """Fail before reading the corpus, not after, when OUT or its table cannot be written."""
    for target in (out, table_out):
        if target.is_dir():
            raise CorpusError(f"output {target} is a directory")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise CorpusError(f"output directory does not exist: {parent}")
    try:
        with tempfile.TemporaryFile(dir=parent, prefix=f".{out.name}.probe-"):
            pass
    except OSError as error:
        raise CorpusError(f"cannot write into {parent}: {error.strerror or error}") from None
