# columnist: `make demo` runs the main job on the embedded database; `make test` runs every test.
# Both set themselves up first (a virtualenv in .venv with the project and its dev extras).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DB ?= chdb://./.columnist/demo-db

.PHONY: setup test demo clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

test: setup
	$(BIN)/pytest

demo: setup
	rm -rf .columnist/demo-db
	$(BIN)/columnist tag tests/data/photos --vocab vocab/space.yaml --db $(DEMO_DB)
	$(BIN)/columnist query --db $(DEMO_DB) \
	  "SELECT image_id, round(earth, 3) AS earth, round(moon, 3) AS moon, round(astronaut, 3) AS astronaut, round(spacewalk, 3) AS spacewalk FROM columnist.image_columns ORDER BY image_id"

clean:
	rm -rf .columnist .pytest_cache
