"""Command line: ``python -m trainer COMMAND ...``; the one place for arguments, messages and exit codes.

Library modules return results and raise typed errors; the commands here print the results on stdout and
each error as ``error: MESSAGE`` on stderr. Every command exits with
  0    success
  1    an error the user can act on: bad input, a corrupt file, an output that cannot be written, a failed check
  2    a usage error, from argparse itself (unknown option, missing argument, a value it cannot parse)
  130  interrupted (Ctrl-C); ``train`` instead stops at a safe point on SIGINT or SIGTERM, saves what it
       trained and exits with 128 + the signal number
A command imports its library modules only when it runs, and its --help only the light ones its defaults
come from: no help, nor ``verify``, ``evaluate``, ``plot``, pays for numba.
"""
from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # train saves what it trained, then exits 128 + the signal
DESCRIPTION = "Command line: ``python -m trainer COMMAND ...``."


def main(argv: list[str] | None = None) -> int:
    """Run the command in `argv` (default: sys.argv[1:]) and return its exit code; argparse exits with 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m trainer", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only its arguments: they may import light library modules for defaults
            add_arguments(sub)
            sub.set_defaults(run=run)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _error(message: object) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text!r}")
    return int(text)


# ------------------------------------------------------------------------------------------------ corpus

def _add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    """``corpus wiki DUMP OUT``, ``corpus stats CORPUS`` and ``corpus phrases CORPUS OUT``."""
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


def _run_corpus(args: argparse.Namespace) -> int:
    """``corpus wiki`` and ``corpus stats``: the counts, one labelled line each."""
    if args.action == "phrases":
        return _run_phrases(args)
    from trainer.corpus import CorpusError, clean_wiki_dump, encode_corpus

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
        return _error(error)
    width = max(map(len, labels.values()))
    for key, label in labels.items():
        print(f"{label:<{width}}  {counts[key]:>14,}")
    return 0


# The learning options of `corpus phrases`, which --apply (a table's phrases, joined as they are) excludes.
_LEARNING = ("min_count", "threshold", "passes", "later_threshold", "scoring", "max_pairs")


def _run_phrases(args: argparse.Namespace) -> int:
    """``corpus phrases``: learn a table (or read one with --apply), then write OUT and OUT.phrases.tsv;
    a line per pass learnt and one for what was written. Every error leaves no file behind."""
    from trainer import phrase_table
    from trainer.artifact import atomic_file
    from trainer.phrases import EncodedText
    from trainer.reader import CorpusError

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
        _check_phrases_output(out, table_out)
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
        return _error(error)
    except OSError as error:
        return _error(f"writing {out} failed: {error.strerror or error}; nothing was written")
    for record in passes:
        print(f"pass {record['pass']}: {record['tokens']:,} tokens, {record['words']:,} words and "
              f"{record['pairs']:,} pairs counted, {record['prunings']} prunings ({record['pruned_pairs']:,} "
              f"pairs forgotten); {record['phrases']:,} phrases score above {record['threshold']:g}, "
              f"joined {record['joins']:,} times")
    print(f"wrote {out}: {text.tokens():,} tokens ({sum(joins):,} pairs joined); "
          f"{table_out}: {len(table.phrases):,} phrases")
    return 0


def _check_phrases_output(out: Path, table_out: Path) -> None:
    """Fail before reading the corpus, not after, when OUT or its table cannot be written: CorpusError."""
    from trainer.reader import CorpusError

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


# ------------------------------------------------------------------------------------------------- train

def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The corpus, --out, --quiet, --workdir, then one option per TrainConfig field, with its default."""
    from trainer.train import TrainConfig

    parser.add_argument("corpus", help="text file (one sentence or document per line, or text8-style one "
                                       "line), optionally .gz or .bz2")
    parser.add_argument("--out", required=True, help="model folder to write (an existing one is replaced "
                                                     "atomically, only once the new one is complete)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--workdir", metavar="DIR", help="folder for the corpus's token ids as memory-mapped "
                                                         "files (4 to 8 bytes a token; default: memory, or the "
                                                         "temporary folder beyond 50 million tokens)")
    for f in dataclasses.fields(TrainConfig):
        options = dict(f.metadata)
        kind = int if f.type in ("int", "int | None") else float if f.type == "float" else str
        default = f.default
        options["help"] += f" (default: {default})"
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default, **options)


def _run_train(args: argparse.Namespace) -> int:
    """Encode the corpus, train, save the model folder; progress and a summary line unless --quiet."""
    from trainer import artifact, train
    from trainer.corpus import CorpusError, encode_corpus
    from trainer.progress import Progress

    try:
        config = train.TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(train.TrainConfig)})
        out = Path(args.out)
        train.check_writable(out)
        corpus = encode_corpus(args.corpus, min_count=config.min_count, max_vocab=config.max_vocab,
                               max_sentence_length=config.max_sentence_length, workdir=args.workdir,
                               progress=not args.quiet, workers=config.workers)
        train.check_vocabulary_size(config, len(corpus.vocab))
    except (CorpusError, train.TrainConfigError, OSError, artifact.ModelError) as exc:
        return _error(exc)
    mode = Progress.choose_mode(args.quiet)
    progress = Progress(corpus.stats["kept_tokens"] * config.epochs, config.epochs, mode)
    progress.say(f"corpus: {corpus.stats['raw_tokens']:,} tokens, vocabulary {len(corpus.vocab):,} words "
                 f"(min count {config.min_count}), {corpus.stats['kept_tokens']:,} tokens kept")
    stop = threading.Event()
    with _stop_on_signals(stop) as signal_code:
        result = train.train_vectors(corpus, config, progress, stop)
        try:
            train.save_model(out, config, corpus, args.corpus, result)
        except (OSError, artifact.ModelError) as exc:
            return _error(f"could not write {out}: {exc}; any previous model there is unchanged")
    state = f"INTERRUPTED after {result.epochs_done:.2f} of {config.epochs} epochs" if result.interrupted \
        else f"{config.epochs} epochs"
    last = f"{result.loss_per_epoch[-1]:.4f}" if result.loss_per_epoch else "n/a"
    progress.say(f"saved {out}: {state} in {result.seconds:.1f} s, {result.words_per_second:,.0f} words/s, "
                 f"{config.workers} workers, final epoch loss {last}")
    return signal_code[0] if result.interrupted else 0


class _Quit(BaseException):
    """A second SIGINT/SIGTERM: unwinds the main thread, so that a model folder being written removes its
    temporary copy, before the process ends by that signal."""


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[list[int]]:
    """SIGINT/SIGTERM: the first stops training before the next centre word and the model is saved, marked
    with the epochs done; a second one ends the process at once without saving. Yields a holder of the
    exit code to use (128 + signal number) once one was received; the previous handlers return on exit."""
    code = [0]

    def handler(signum, frame):
        if stop.is_set():
            for each in STOP_SIGNALS:
                signal.signal(each, signal.SIG_DFL)  # a third signal ends the process even while cleaning up
            raise _Quit(signum)
        code[0] = 128 + signum
        stop.set()
        print(f"\n{signal.Signals(signum).name}: stopping at the next safe point and saving what was "
              "trained (send it again to quit without saving)", file=sys.stderr)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield code
    except _Quit as second:
        signal.raise_signal(second.args[0])  # its default action is back: the process ends here
        raise
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


# ---------------------------------------------------------------------------- export, import and verify

def _add_form_options(parser: argparse.ArgumentParser) -> None:
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--binary", dest="binary", action="store_true", default=None, help="force binary")
    form.add_argument("--text", dest="binary", action="store_false", help="force text")


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder")
    parser.add_argument("out", help="output file: .bin (or .bin.gz) for binary, anything else for text; "
                                    ".gz/.bz2 compress")
    _add_form_options(parser)
    parser.add_argument("--counts", metavar="FILE", help="also write the vocabulary with counts, in the word2vec "
                                                         "tool's -save-vocab layout ('word count' lines)")


def _run_export(args: argparse.Namespace) -> int:
    """A "wrote FILE" line per file written."""
    from trainer.artifact import ModelError, load
    from trainer.word2vec_format import export_counts, export_word2vec

    try:
        model = load(args.model)
        print(f"wrote {export_word2vec(model, args.out, binary=args.binary)}")
        if args.counts:
            print(f"wrote {export_counts(model, args.counts)}")
    except (ModelError, OSError) as exc:
        return _error(exc)
    return 0


def _add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("vectors", help="vectors file: word2vec C text or binary, fastText .vec, GloVe; "
                                        "optionally .gz/.bz2. Text or binary is told from the suffix "
                                        "(.bin; .txt, .vec) or else from the content")
    parser.add_argument("model", help="model folder to write (replaced atomically if it exists)")
    _add_form_options(parser)
    parser.add_argument("--no-header", dest="header", action="store_false", default=None,
                        help="the first line is a row, not 'VOCAB_SIZE DIM' (GloVe; detected when unambiguous)")
    parser.add_argument("--limit", type=_positive, metavar="N", help="keep the first N rows only")
    parser.add_argument("--unicode-errors", choices=("strict", "replace", "ignore"), default="replace",
                        help="words that are not valid UTF-8: refuse, replace the bad bytes (default), drop them")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="leave out rows with a wrong number of values, values that are not finite numbers "
                             "or words a model cannot store (default: refuse the file, naming the row)")
    parser.add_argument("--counts", metavar="FILE", help="word counts, in the word2vec tool's -save-vocab layout "
                                                         "('word count' lines); without it counts are 0")


def _run_import(args: argparse.Namespace) -> int:
    """What the import repaired or left out on stderr, then "wrote MODEL"."""
    from trainer.artifact import ModelError
    from trainer.word2vec_format import import_word2vec

    try:
        path = import_word2vec(args.vectors, args.model, binary=args.binary, header=args.header,
                               limit=args.limit, unicode_errors=args.unicode_errors,
                               skip_bad_rows=args.skip_bad_rows, counts=args.counts, progress=True,
                               notes=lambda line: print(line, file=sys.stderr))
    except (ModelError, OSError) as exc:
        return _error(exc)
    print(f"wrote {path}")
    return 0


def _add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder")
    parser.add_argument("--no-checksums", dest="checksums", action="store_false",
                        help="skip the SHA-256 comparison (sizes, shapes and values are still checked)")


def _run_verify(args: argparse.Namespace) -> int:
    """An "ok: ..." line describing the model, or the first problem found."""
    from trainer.artifact import ModelError, verify

    try:
        model = verify(args.model, checksums=args.checksums)
    except (ModelError, OSError) as exc:
        return _error(exc)
    print(f"ok: {model.path}: {model.vocab_size} words x {model.dim} dimensions, "
          f"objective {model.objective or 'none (imported)'}, "
          f"output vectors {'present' if model.output_vectors is not None else 'absent'}, "
          f"checksums {'verified' if args.checksums else 'not checked'}")
    return 0


# ----------------------------------------------------------------------------------------------- evaluate

def _add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder")
    parser.add_argument("--analogies", metavar="FILE",
                        help="analogy questions: ': section' lines, then 'a b c d' lines (e.g. questions-words.txt)")
    parser.add_argument("--similarity", metavar="FILE", nargs="+", default=[],
                        help="word-pair files: 'word1<TAB>word2<TAB>score' lines, '#' comments "
                             "(e.g. wordsim353.tsv simlex999.txt)")
    parser.add_argument("--restrict-vocab", type=int, default=30000, metavar="N",
                        help="analogies use only the N most frequent words (default 30000); "
                             "word pairs use the first 300000, as gensim does")
    parser.add_argument("--case-sensitive", action="store_true",
                        help="match words exactly (default: compare upper-cased forms, as gensim does)")
    parser.add_argument("--json", metavar="OUT", help="also write the results to OUT as JSON")


def _run_evaluate(args: argparse.Namespace) -> int:
    """The report table, and the results as JSON with --json."""
    if not args.analogies and not args.similarity:
        return _error("give --analogies FILE, --similarity FILE [FILE ...], or both")
    if args.restrict_vocab < 1:
        return _error(f"--restrict-vocab must be a positive integer, got {args.restrict_vocab}")
    from trainer import artifact, evaluate

    try:
        results = evaluate.evaluate_model(artifact.load(args.model), args.analogies, args.similarity,
                                          args.restrict_vocab, case_insensitive=not args.case_sensitive)
    except (artifact.ModelError, evaluate.EvaluationError) as exc:
        return _error(exc)
    print(evaluate.format_report(results))
    if args.json:
        try:
            evaluate.write_results(results, args.json)
        except OSError as exc:
            return _error(f"{args.json}: cannot write ({exc.strerror or exc})")
    return 0


# ---------------------------------------------------------------------------------------------- gradcheck

def _add_gradcheck_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the random test data (default: 0)")


def _run_gradcheck(args: argparse.Namespace) -> int:
    """Print function, max relative error, pass/FAIL for each check; exit code 1 if any check fails."""
    from trainer.objectives import gradient_errors

    tolerance = 1e-5
    rows = gradient_errors(args.seed)
    width = max(len(label) for label, _ in rows)
    print(f"{'function':<{width}}  {'max rel. error':>14}  result")
    for label, error in rows:
        print(f"{label:<{width}}  {error:>14.3e}  {'pass' if error <= tolerance else 'FAIL'}")
    failed = sum(not error <= tolerance for _, error in rows)
    print(f"{len(rows) - failed} passed, {failed} failed (tolerance {tolerance:g}, seed {args.seed})")
    return EXIT_ERROR if failed else 0


# --------------------------------------------------------------------------------------------------- plot

def _add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder")
    parser.add_argument("words", nargs="*", metavar="WORD", help="words to plot (at least one)")
    parser.add_argument("--out", required=True, metavar="FILE.png", help="PNG file to write (replaced atomically)")
    parser.add_argument("--neighbors", metavar="W", help="plot W and its k nearest neighbours by cosine")
    parser.add_argument("--k", type=int, default=10, help="number of neighbours with --neighbors (default 10)")
    parser.add_argument("--loss", action="store_true", help="plot the training loss recorded in meta.json")
    parser.add_argument("--skip-unknown", action="store_true",
                        help="leave out words not in the vocabulary, with a warning (default: an error)")


def _run_plot(args: argparse.Namespace) -> int:
    """A "wrote FILE.png" line; with --skip-unknown a warning on stderr naming the words left out."""
    modes = bool(args.words) + bool(args.neighbors) + bool(args.loss)
    if modes != 1:
        return _error("give WORD ..., --neighbors W or --loss (exactly one of them)")
    if args.k < 1:
        return _error(f"--k must be a positive integer, got {args.k}")
    from trainer import artifact, plot

    try:
        model = artifact.load(args.model)
        if args.loss:
            out = plot.plot_loss(model, args.out)
        elif args.neighbors:
            (word,), _ = plot.known_words(model, [args.neighbors])
            neighbours = plot.nearest(model, word, args.k)
            out = plot.plot_words(model, [word] + neighbours, args.out, highlight=word,
                                  title=f"{model.path.name}: '{word}' and its {len(neighbours)} nearest "
                                        "neighbours (cosine), PCA of input vectors")
        else:
            words, unknown = plot.known_words(model, args.words, args.skip_unknown)
            if unknown:
                print(f"warning: left out, not in the vocabulary: {' '.join(unknown)}", file=sys.stderr)
            out = plot.plot_words(model, words, args.out)
    except (artifact.ModelError, plot.PlotError) as exc:
        return _error(exc)
    except OSError as exc:
        return _error(f"{args.out}: cannot write ({exc.strerror or exc})")
    print(f"wrote {out}")
    return 0


# command -> (one-line help, add its arguments to a parser, run it on the parsed arguments -> exit code)
COMMANDS = {
    "corpus": ("corpus tools: turn a Wikipedia dump into text, count a corpus", _add_corpus_arguments, _run_corpus),
    "train": ("train skip-gram embeddings into a model folder", _add_train_arguments, _run_train),
    "export": ("write a model's vectors in word2vec text (.txt) or binary (.bin) format", _add_export_arguments,
               _run_export),
    "import": ("turn word2vec text or binary vectors into a model folder", _add_import_arguments, _run_import),
    "verify": ("check a model folder: files, shapes, dtypes, finiteness, checksums", _add_verify_arguments,
               _run_verify),
    "evaluate": ("analogy accuracy and word-pair similarity of a model", _add_evaluate_arguments, _run_evaluate),
    "gradcheck": ("check the objectives' gradients numerically", _add_gradcheck_arguments, _run_gradcheck),
    "plot": ("2D PCA scatter of words, or the training loss curve", _add_plot_arguments, _run_plot),
}
