# tipbox: `make run` serves the form with the embedded dev mailbox; `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CATALOGS := $(wildcard app/locales/*/LC_MESSAGES/messages.po)
COMPILED := $(CATALOGS:.po=.mo)

.PHONY: run test lint typecheck check messages extract system-deps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("tipbox needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Catalogs are compiled at build time; the service also compiles a .po newer than its .mo in memory.
app/locales/%/LC_MESSAGES/messages.mo: app/locales/%/LC_MESSAGES/messages.po $(STAMP)
	$(BIN)/pybabel compile --use-fuzzy --domain messages --input-file $< --output-file $@ --statistics

run: $(STAMP) $(COMPILED)
	$(BIN)/tipbox serve

system-deps:
	scripts/system-deps.sh

test: $(STAMP) $(COMPILED) system-deps
	$(BIN)/ruff check app tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check app tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# Translators: pull new strings out of the code into the catalogs, then compile them.
extract: $(STAMP)
	$(BIN)/pybabel extract --mapping-file babel.cfg --keywords N_ --no-location --sort-output \
		--project tipbox --output-file app/locales/messages.pot .
	$(BIN)/pybabel update --domain messages --input-file app/locales/messages.pot --output-dir app/locales \
		--no-fuzzy-matching --ignore-obsolete

messages: $(COMPILED)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(COMPILED)
