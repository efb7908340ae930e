# fashionrag — `make test` sets everything up itself; see README.md.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTOS := $(wildcard protos/fashionrag/v1/*.proto)
STUBS := $(patsubst protos/%.proto,%_pb2.py,$(PROTOS))
# npm ci writes its own copy of the lock file last: the stamp of a complete node_modules.
NODE_STAMP := node_modules/.package-lock.json
BUF := node_modules/.bin/buf

# `make demo` (online, the real model and dataset) or, offline:
#   make demo DATASET=./sample_data MODEL=configs/tiny-clip.json PRETRAINED=none
DATASET ?= detection-datasets/fashionpedia
MODEL ?= ViT-B-32
PRETRAINED ?= laion2b_s34b_b79k
LIMIT ?= 1000
QUERY ?= red tops

.PHONY: setup protos node_modules browser promtool test lint typecheck unit k8s-validate demo demo-stop sample-data bench eval smoke clean

setup: $(STAMP) protos

# The virtual environment is made once and re-made only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check \
		-e ".[embedder,indexer,query,chroma-server,dev]"
	@touch $(STAMP)

# The stubs are generated, never committed: one command, absolute imports (fashionrag.v1).
protos: $(STUBS)
fashionrag/v1/%_pb2.py: protos/fashionrag/v1/%.proto $(STAMP)
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. $<

# The Node tools, pinned by package-lock.json: buf (its binary comes in a platform package, no
# download at run time) and @grpc/grpc-js with @grpc/proto-loader for tests/interop.
node_modules: $(NODE_STAMP)
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# buf lint: the protos' names and comments per buf.yaml (STANDARD and COMMENTS).
lint: setup node_modules
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(BUF) lint

typecheck: setup
	$(VENV)/bin/mypy embedder_service indexer_service query_service fashionrag devstack tests scripts benchmarks

# The gallery test drives Debian's Chromium headless; installed here when missing (as root).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "make: the gallery test needs Chromium: sudo apt-get install chromium" >&2; \
	    exit 1; fi; }

# promtool, Prometheus' own check of the metrics pages (tests/query_service/test_metrics.py),
# is the one binary taken from Debian's prometheus package: unpacked beside the venv's Python,
# no daemon installed or started.
PROMTOOL := $(VENV)/bin/promtool
promtool: $(PROMTOOL)
$(PROMTOOL):
	@mkdir -p $(VENV)/bin
	tmp=$$(mktemp -d) && cd $$tmp && \
	  { apt-get download prometheus 2>/dev/null || \
	    { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download prometheus; }; } && \
	  dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool > $(CURDIR)/$@.part && \
	  cd $(CURDIR) && rm -rf $$tmp && chmod +x $@.part && mv $@.part $@

test: lint typecheck browser node_modules promtool
	$(PY) -m pytest

unit: setup
	$(PY) -m pytest -m "not integration"

# deploy/k8s: each overlay rendered by kustomize and checked against the Kubernetes schemas,
# offline (also part of `make test`).
k8s-validate: setup
	$(PY) -m pytest tests/deploy -q

# Speed as ratios against baselines measured in the same script; tables in bench_results/.
bench: setup
	$(PY) -m benchmarks.bench_embedder
	$(PY) -m benchmarks.bench_indexer
	$(PY) -m benchmarks.bench_query
	$(PY) -m benchmarks.bench_health
	$(PY) -m benchmarks.bench_regions
	$(PY) -m benchmarks.bench_colour
	# Filtered garment lookups at 250,000 garments: the first run loads them into
	# /tmp/lookup-bench (about 35 minutes on 2 busy cores); later runs only measure.
	$(PY) -m benchmarks.bench_lookup
	@echo "results: bench_results/*.md"

# Against running services (make demo): precision@10 per category, and colour-and-garment
# queries at photo and garment grain side by side, bench_results/eval.md.
eval: setup
	$(PY) -m query_service eval --out bench_results/eval.md

# The whole compose stack, built offline and checked on this machine (deploy/smoke.sh; ~10 min).
smoke: setup
	bash deploy/smoke.sh

sample-data: setup
	$(PY) -m devstack.sample_data ./sample_data --rows $(LIMIT)

demo: setup
	$(PY) scripts/demo.py --dataset "$(DATASET)" --model "$(MODEL)" \
		--pretrained "$(PRETRAINED)" --limit $(LIMIT) --query "$(QUERY)"

demo-stop: setup
	$(PY) scripts/demo.py --stop

clean:
	rm -rf node_modules .demo chroma_data images_data .pytest_cache .mypy_cache .ruff_cache
	rm -f fashionrag/v1/*_pb2*.py fashionrag/v1/*_pb2.pyi
