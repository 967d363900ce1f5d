"""Command line: ``python -m trainer COMMAND ...``; each command lives in the module that owns its concern."""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help). A module is imported only when its command runs, so that
# `python -m trainer export` never pays for numba. Each module defines add_<command>_arguments(parser)
# and run_<command>(args) -> int (the exit code).
COMMANDS: dict[str, tuple[str, str]] = {
    "corpus": ("trainer.corpus", "corpus tools: turn a Wikipedia dump into text, count a corpus"),
    "train": ("trainer.train", "train skip-gram embeddings into a model folder"),
    "export": ("trainer.word2vec_format", "write a model's vectors in word2vec text (.txt) or binary (.bin) format"),
    "import": ("trainer.word2vec_format", "turn word2vec text or binary vectors into a model folder"),
    "verify": ("trainer.artifact", "check a model folder: files, shapes, dtypes, finiteness, checksums"),
    "evaluate": ("trainer.evaluate", "analogy accuracy and word-pair similarity of a model"),
    "gradcheck": ("trainer.objectives", "check the objectives' gradients numerically"),
    "plot": ("trainer.plot", "2D PCA scatter of words, or the training loss curve"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            getattr(module, f"add_{name}_arguments")(sub)
            sub.set_defaults(run=getattr(module, f"run_{name}"))
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
