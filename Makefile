# The two commands of the README, and the rest of the project's chores.
# Everything runs from a virtual environment in .venv made from pinned versions (constraints.txt).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
WORKERS ?= 2
CACHE := .cache
WHEEL_DIR := $(CACHE)/wheels
DUMP := $(CACHE)/enwiki-sample.xml.bz2
CORPUS := $(CACHE)/enwiki-sample.txt
MODEL := models/default
TRAIN_FLAGS ?= --epochs 5

.PHONY: serve test train corpus docker-test bench-train bench-serve bench-scale bench-import bench-replicas bench-phrases clean

## make serve: environment, default corpus, default model (trained once), then gunicorn on $(PORT)
serve: $(VENV)/.train $(MODEL)/meta.json
	@echo
	@echo "Serving $(MODEL) on http://127.0.0.1:$(PORT). Try:"
	@echo "  curl 'http://127.0.0.1:$(PORT)/similar?word=king&k=5'"
	@echo "  curl 'http://127.0.0.1:$(PORT)/similar?positive=king,woman&negative=man&k=5'"
	@echo "  curl 'http://127.0.0.1:$(PORT)/vector?word=music'"
	@echo "  curl 'http://127.0.0.1:$(PORT)/context-probs?word=music&k=5'"
	@echo "or open http://127.0.0.1:$(PORT)/?word=music in a browser (the explorer page)."
	@echo
	MODEL_DIR=$(MODEL) PORT=$(PORT) WEB_CONCURRENCY=$(WORKERS) \
		$(VENV)/bin/gunicorn -c service/gunicorn.conf.py 'service:create_app()'

## make test: environment with the test extras and the browser of the page's tests, then the whole suite
test: $(VENV)/.test
	$(CHROMIUM)
	$(PY) -m pytest -q

train: $(MODEL)/meta.json

corpus: $(CORPUS)

$(MODEL)/meta.json: $(CORPUS) | $(VENV)/.train
	$(PY) -m trainer train $(CORPUS) --out $(MODEL) $(TRAIN_FLAGS)

# The default corpus: the English Wikipedia sample that the gensim wheel on PyPI carries, cleaned by
# the trainer's own dump cleaner. Only the wheel is downloaded; gensim is never installed for this.
$(DUMP): | $(VENV)/.base
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --dest $(WHEEL_DIR) gensim==4.4.0
	$(PY) scripts/extract_wheel_member.py $(WHEEL_DIR) \
		gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2 $@

$(CORPUS): $(DUMP) | $(VENV)/.train
	$(PY) -m trainer corpus wiki $(DUMP) $@

$(VENV)/.base:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	touch $@

$(VENV)/.%: pyproject.toml constraints.txt | $(VENV)/.base
	$(PY) -m pip install --quiet -c constraints.txt -e '.[$*]'
	touch $@

docker-test:
	bash scripts/docker-test.sh

# The benchmarks read ../shared/data by default (DATA=... to point elsewhere).
DATA ?= ../shared/data

# The original word2vec C tool as a second reference, built from the C source that the PyPI sdist of
# the `word2vec` package carries (with that package's own compiler flags); nothing of it is installed.
WORD2VEC_C := $(CACHE)/bin/word2vec
$(WORD2VEC_C): | $(VENV)/.base
	$(PY) -m pip download --quiet --no-deps --no-binary=:all: --dest $(CACHE)/sdist word2vec==0.11.1
	mkdir -p $(CACHE)/bin
	tar -xzf $(CACHE)/sdist/word2vec-0.11.1.tar.gz -C $(CACHE)/sdist word2vec-0.11.1/word2vec/includes/word2vec.c
	gcc $(CACHE)/sdist/word2vec-0.11.1/word2vec/includes/word2vec.c -o $@ \
		-lm -pthread -Ofast -march=native -funroll-loops -Wno-unused-result

bench-train: $(VENV)/.bench $(WORD2VEC_C)
	$(PY) bench/train_vs_gensim.py --corpus $(DATA)/enwiki-sample.txt --data $(DATA) --repeats 3 \
		--word2vec-c $(WORD2VEC_C)

# word2phrase, from the same sdist and with the same flags as the word2vec C tool above.
WORD2PHRASE_C := $(CACHE)/bin/word2phrase
$(WORD2PHRASE_C): | $(WORD2VEC_C)
	tar -xzf $(CACHE)/sdist/word2vec-0.11.1.tar.gz -C $(CACHE)/sdist word2vec-0.11.1/word2vec/includes/word2phrase.c
	gcc $(CACHE)/sdist/word2vec-0.11.1/word2vec/includes/word2phrase.c -o $@ \
		-lm -pthread -Ofast -march=native -funroll-loops -Wno-unused-result

# Phrases: skipgram's `corpus phrases`, word2phrase and gensim's Phrases on the enwiki sample and WordNet.
bench-phrases: $(VENV)/.bench $(WORD2PHRASE_C)
	$(PY) bench/phrases_vs_peers.py --word2phrase $(WORD2PHRASE_C) --repeats 3 \
		--corpus $(DATA)/enwiki-sample.txt --corpus $(DATA)/wordnet.txt

# The load generator, from Debian (bookworm), installed when missing.
WRK_VERSION := 4.1.0-3+b2
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

WRK := command -v wrk >/dev/null || { $(SUDO) apt-get update && \
		$(SUDO) apt-get install -y --no-install-recommends wrk=$(WRK_VERSION); }

# The headless browser of the explorer page's tests (tests/service/test_browser.py), from Debian likewise:
# chromium and the chromedriver that selenium drives, of one version. bookworm-security keeps only its
# latest chromium, so its pin goes stale at each security release (156.0.8078.114 did): then the pin of
# bookworm's own pocket, which changes only at a point release, is installed instead.
CHROMIUM_VERSION := 156.0.8078.129-1~deb12u1
CHROMIUM_RELEASE_VERSION := 150.0.7871.100-1~deb12u1
CHROMIUM_INSTALL = $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		chromium=$(1) chromium-common=$(1) chromium-driver=$(1)
CHROMIUM := { command -v chromium && command -v chromedriver; } >/dev/null || { $(SUDO) apt-get update && \
		{ $(call CHROMIUM_INSTALL,$(CHROMIUM_VERSION)) || \
		  { echo "chromium $(CHROMIUM_VERSION) did not install (bookworm-security keeps only its latest); installing bookworm's $(CHROMIUM_RELEASE_VERSION)" && \
		    $(call CHROMIUM_INSTALL,$(CHROMIUM_RELEASE_VERSION)); }; }; }

bench-serve: $(VENV)/.bench
	$(WRK)
	$(PY) bench/serve_load.py

# A million words x 300 (about 1.2 GB of vectors, 3.5 GB of disk under .cache/scale): import, start-up,
# memory with 2 and 4 workers, latency and recall for every index kind.
bench-scale: $(VENV)/.bench
	$(WRK)
	$(PY) bench/serve_scale.py --workdir $(CACHE)/scale

# The load balancer of bench-replicas, from Debian (bookworm-security) likewise. Debian's package starts its
# service where the init system allows it, with a default configuration that listens on no port.
HAPROXY_VERSION := 2.6.12-1+deb12u4
HAPROXY := command -v haproxy >/dev/null || { $(SUDO) apt-get update && \
		$(SUDO) apt-get install -y --no-install-recommends haproxy=$(HAPROXY_VERSION); }

# Two instances behind haproxy (health checks on /readyz), wrk through it: steady, one instance SIGKILLed and
# restarted, a new model saved and prepared, then the switch to it by HUP on both; failures, p50/p99 per phase.
bench-replicas: $(VENV)/.bench
	$(WRK)
	$(HAPROXY)
	$(PY) bench/replicas.py

# A 1,000,000 x 300 file in binary and text (about 4 GB in a temporary folder), imported beside gensim.
bench-import: $(VENV)/.bench
	$(PY) bench/import_vs_gensim.py

clean:
	rm -rf $(VENV) $(CACHE) build *.egg-info
