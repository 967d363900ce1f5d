"""``python -m trainer COMMAND ...``: the command line of trainer.cli."""
import sys

from trainer.cli import main

if __name__ == "__main__":
    sys.exit(main())
