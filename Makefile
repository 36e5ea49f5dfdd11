# Run Bridge: `make demo` runs it locally, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install tools kafka marquez demo test unit lint bench docs clean

install: $(VENV)/.installed

tools:  ## Java, Maven and PostgreSQL for the local Kafka and Marquez, apt-get'd if missing
	bash devenv/ensure-tools.sh

$(VENV)/.installed: pyproject.toml requirements.lock | tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

kafka: install  ## fetch the Kafka broker jars from Maven Central (cached in .cache/)
	$(BIN)/python -m devenv.kafka fetch

# With MARQUEZ_URL set (a running server) this builds nothing.
marquez: install  ## build Marquez 0.50.0 from devenv/vendor/ with Maven (cached in .cache/)
	$(BIN)/python -m devenv.marquez fetch

demo: install kafka  ## local Kafka, the emulators, Marquez (if it can be built) and the bridge; then stop
	$(BIN)/python -m devenv.marquez fetch || echo "Marquez could not be built (above): the demo runs without it" >&2
	$(BIN)/python -m devenv.demo

test: install kafka marquez  ## unit and integration tests: real Kafka, ADF emulator, real Marquez
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

bench: install kafka  ## throughput benchmarks on a real broker; figures in bench/results/
	$(BIN)/python -m bench.run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

docs: install  ## regenerate contracts/schemas and docs/asyncapi.json after a contract change
	$(BIN)/python -m contracts
	$(BIN)/python -m bridge.asyncapi > docs/asyncapi.json

clean:
	rm -rf $(VENV) .cache .run .pytest_cache .mypy_cache .ruff_cache
