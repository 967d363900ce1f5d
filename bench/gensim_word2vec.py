"""Train gensim's Word2Vec with the settings of the comparison; the reference side of train_vs_gensim.py.

python bench/gensim_word2vec.py CORPUS OUT.bin --epochs 5 --workers 2 --seed 1
Writes the input vectors in word2vec binary format and prints one JSON line: build_vocab and training seconds, raw words.
"""
import argparse
import json
import time

from gensim.models import Word2Vec
from gensim.models.word2vec import LineSentence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpus")
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    model = Word2Vec(sg=1, negative=5, window=5, vector_size=100, min_count=5, sample=1e-3,
                     workers=args.workers, seed=args.seed)
    started = time.perf_counter()
    model.build_vocab(LineSentence(args.corpus))
    vocab_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model.train(LineSentence(args.corpus), total_examples=model.corpus_count, epochs=args.epochs)
    seconds = time.perf_counter() - started
    model.wv.save_word2vec_format(args.out, binary=True)
    print(json.dumps({"vocab_seconds": vocab_seconds, "train_seconds": seconds,
                      "raw_words": model.corpus_total_words}))


if __name__ == "__main__":
    main()
