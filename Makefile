# columnist: `make demo` runs the main job on the embedded database; `make test` runs every test.
# Both set themselves up first (a virtualenv in .venv with the project and its dev extras).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup system-deps setup-export test test-fast test-parity demo demo-tag kafka-up kafka-down tiny-clip bench bench-peer bench-model bench-decode clean

setup: $(VENV)/.installed system-deps

# from Debian, when this user may install them (root): libexempi (XMP sidecars), exiftool and
# kcat (tests read sidecars with ExifTool and produce events with kcat); otherwise it says what is missing
SYSTEM_DEPS := libexempi8 libimage-exiftool-perl kcat
system-deps:
	@missing=$$(for p in $(SYSTEM_DEPS); do dpkg -s $$p > /dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    (apt-get update -qq && apt-get install -y -qq $$missing) > /dev/null 2>&1 || echo "could not install: $$missing"; \
	  else echo "missing system packages (sidecars and some tests need them): $$missing"; fi; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# torch, transformers and open-clip-torch: only to export models and run the parity tests
# (torch from PyPI is a multi-GB CUDA build; it runs on the CPU)
setup-export: $(VENV)/.export-installed

$(VENV)/.export-installed: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev,export]'
	touch $@

test: setup
	$(BIN)/pytest

# the inner loop: everything that needs no Kafka broker (no JVM), in about five minutes
test-fast: setup
	$(BIN)/pytest -m "not kafka"

test-parity: setup-export
	$(BIN)/pytest -s tests/models/test_parity.py tests/models/test_parity_siglip.py

# regenerate the committed tiny-clip bit-for-bit (same seed, same torch/transformers versions;
# PYTHONHASHSEED fixes the order in which the exporter walks sets, hence the file's bytes)
tiny-clip: setup-export
	PYTHONHASHSEED=0 $(BIN)/columnist model export --random tiny --seed 0 --name tiny-clip --out models/tiny-clip

# the service end to end: encode path vs raw onnxruntime, replay, dashboard, latency, memory,
# tag against fastembed (about 12 min)
bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/decode.py
	@test -f .columnist/models/vit-b-32/model.json || $(MAKE) setup-export
	$(BIN)/python bench/service.py

# `columnist tag` against a peer (fastembed) on the same model files and images, whole process
bench-peer: setup
	$(BIN)/pip install -q -e '.[bench]'
	@test -f .columnist/models/vit-b-32/model.json || $(MAKE) setup-export
	$(BIN)/python -m bench.peer

# camera JPEGs decoded at the size the model needs vs a full decode (seconds, no export needed)
bench-decode: setup
	$(BIN)/python bench/decode.py

# speed of the full ViT-B/32 shape, fp32 and int8 (exports a random one on first use)
bench-model: setup
	@test -f .columnist/models/vit-b-32/model.json || $(MAKE) setup-export
	$(BIN)/python -m bench.model

# Kafka + worker + publish + vocabulary change, then everything stopped (deploy/demo.py)
demo: setup
	$(BIN)/python deploy/demo.py

# the batch path without Kafka: tag the sample photos, fit a calibration, print scores and tiers
demo-tag: setup
	$(BIN)/python deploy/demo_tag.py

kafka-up: setup
	deploy/kafka/kafka.sh up

kafka-down:
	deploy/kafka/kafka.sh down

clean:
	rm -rf .columnist .pytest_cache
