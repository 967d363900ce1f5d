"""Training progress for people: a tqdm bar on a terminal, plain log lines elsewhere, nothing when quiet."""
from __future__ import annotations

import math
import sys
import time


class Progress:
    """mode: 'bar' (tqdm: words/s, loss, learning rate, ETA), 'log' (one line per epoch), 'quiet'."""

    def __init__(self, total_words: int, epochs: int, mode: str, stream=None):
        self.total_words, self.epochs, self.mode = total_words, epochs, mode
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self.shown = 0
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm
            self.bar = tqdm(total=total_words, unit="w", unit_scale=True, dynamic_ncols=True,
                            file=self.stream, smoothing=0.1, desc="training")

    @staticmethod
    def choose_mode(quiet: bool, stream=None) -> str:
        stream = stream or sys.stderr
        if quiet:
            return "quiet"
        return "bar" if stream.isatty() else "log"

    def update(self, words_done: int, loss: float, alpha: float) -> None:
        if self.bar is not None:
            self.bar.update(words_done - self.shown)
            if not math.isnan(loss):
                self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{alpha:.5f}", refresh=False)
        self.shown = words_done

    def epoch_done(self, epoch: int, loss: float) -> None:
        self.say(f"epoch {epoch + 1}/{self.epochs}: mean loss per pair {loss:.4f}, "
                 f"{time.perf_counter() - self.started:.1f} s elapsed")

    def say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        elif self.mode == "log":
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
