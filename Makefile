# tipbox: `make run` serves the form with the embedded dev mailbox; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CATALOGS := $(wildcard app/locales/*/LC_MESSAGES/messages.po)
COMPILED := $(CATALOGS:.po=.mo)

.PHONY: run test lint typecheck check messages extract review-list system-deps browser-deps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("tipbox needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Catalogs are compiled at build time; the service also compiles a .po newer than its .mo in memory.
app/locales/%/LC_MESSAGES/messages.mo: app/locales/%/LC_MESSAGES/messages.po $(STAMP)
	$(BIN)/pybabel compile --use-fuzzy --domain messages --input-file $< --output-file $@ --statistics

# The development secret is kept in ./mailbox, so receipt codes still open their answers after a restart.
run: $(STAMP) $(COMPILED)
	@mkdir -p mailbox && [ -s mailbox/.dev-secret ] || (umask 077 && \
		$(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(32))' > mailbox/.dev-secret)
	TIPBOX_SECRET_KEY="$${TIPBOX_SECRET_KEY:-$$(cat mailbox/.dev-secret)}" $(BIN)/tipbox serve

system-deps:
	scripts/system-deps.sh

# axe-core for the browser tests' accessibility checks, pinned by tests/browser/package-lock.json.
browser-deps: system-deps
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error; \
	elif [ "$${CI:-}" = true ]; then echo "browser-deps: npm is missing" >&2; exit 1; \
	else echo "browser-deps: npm is missing (apt-get install npm); the accessibility checks will be skipped"; fi

test: $(STAMP) $(COMPILED) system-deps browser-deps
	$(BIN)/ruff check app tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check app tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# Throughput and footprint beside the bare stack (issue 8): installs Debian's wrk when root; prints the figures and
# writes them to build/bench/throughput.md (untracked; docs/benchmarks.md is curated by hand).
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--duration 5 --profile /tmp/prof".
bench: $(STAMP) $(COMPILED)
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends wrk >/dev/null; } || { echo "bench: install wrk (apt-get install wrk)" >&2; exit 1; }
	BENCH_COMMAND="make bench$(if $(BENCH_ARGS), BENCH_ARGS=\"$(BENCH_ARGS)\")" \
		$(BIN)/python benchmarks/throughput.py $(BENCH_ARGS)

# Translators: pull new strings out of the code (N_ and _ in app/, templates) into messages.pot, append the new
# ones to every catalog, then `make messages` compiles them. Appending instead of `pybabel update`, which re-sorts
# whole catalogs and drops the `#. review: native speaker` marks (scripts/catalogs.py, docs/translating.md).
extract: $(STAMP)
	$(BIN)/pybabel extract --mapping-file babel.cfg --keywords N_ --no-location --sort-output \
		--project tipbox --output-file app/locales/messages.pot .
	$(BIN)/python scripts/catalogs.py update app/locales/messages.pot

review-list: $(STAMP)
	$(BIN)/python scripts/catalogs.py review docs/translating.md

messages: $(COMPILED)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(COMPILED)
