# The two commands of the README: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench chaos histories test-repeat clean statement-images

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# Chromium for the console's browser tests; `make run` goes on without it.
	-sh scripts/ensure-chromium.sh
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/dunning run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

test: $(STAMP) lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

chaos: $(STAMP)
	$(BIN)/python -m bench.chaos

# The README's page images of a statement and a final notice (docs/images/), from
# `dunning letters sample` on a fixed date, each page rendered to PNG with pypdfium2.
STATEMENT_DATE := 2027-01-12
statement-images: $(STAMP)
	$(BIN)/dunning letters sample hospital-501r --step statement-1 --date $(STATEMENT_DATE) --out docs/images/statement.pdf
	$(BIN)/dunning letters sample hospital-501r --step final-notice --date $(STATEMENT_DATE) --out docs/images/final-notice.pdf
	$(BIN)/dunning letters sample hospital-501r --step final-notice --language es --date $(STATEMENT_DATE) --out docs/images/final-notice-es.pdf
	$(BIN)/python -c "import pathlib, pypdfium2 as p; [p.PdfDocument(f)[i].render(scale=1.25).to_pil().quantize(64).save(f.with_name(f'{f.stem}-page{i + 1}.png'), optimize=True) for f in sorted(pathlib.Path('docs/images').glob('*.pdf')) for i in range(len(p.PdfDocument(f)))]"
	rm docs/images/*.pdf

# Re-record every committed history (tests/histories/*.json) from the scenario tests that record
# one, then replay them. Only for a deliberate workflow change that is gated by workflow.patched
# (or for a new scenario): see README "Workflow histories".
histories: $(STAMP)
	$(BIN)/pytest --record-histories
	$(BIN)/pytest tests/test_replay.py

# The flake check (not in CI): the dev-server and time-skipping tests three times in a row,
# stopping at the first failing round. `make test-repeat REPEAT_MARK=timeskipping` for one kind.
REPEAT_MARK ?= devserver or timeskipping
test-repeat: $(STAMP)
	for i in 1 2 3; do echo "round $$i"; $(BIN)/pytest -m "$(REPEAT_MARK)" -q -p no:cacheprovider || exit 1; done

clean:
	rm -rf .dunning build *.egg-info
