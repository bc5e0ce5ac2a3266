# The two commands a new user runs: `make reproduce-cail` and `make test` (both install into .venv first).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
CAIL_DIR ?= $(if $(wildcard ../shared/cail2020/train.json),../shared/cail2020,data/cail2020)
RUN_DIR ?= runs/cail2020
BIN := $(VENV)/bin

.PHONY: install test reproduce-cail bench clean

install: $(VENV)/.installed

# torch goes first and pinned: an unpinned torch pulled in by another package would fetch GBs of CUDA.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

test: install
	$(BIN)/pytest -q

reproduce-cail: install
	@test -f "$(CAIL_DIR)/train.json" || { \
	  echo "error: no CAIL2020 data in $(CAIL_DIR). Put the official CAIL2020 judicial-summarization files" \
	       "there (train.json in the CAIL2020 JSONL shape, user_dict.txt), or run with CAIL_DIR=/path/to/them." >&2; \
	  exit 1; }
	@mkdir -p $(RUN_DIR)
	$(BIN)/spaces extract oracle --input $(CAIL_DIR)/train.json --output $(RUN_DIR)/labeled.jsonl \
	  --data.user_dict $(CAIL_DIR)/user_dict.txt
	$(BIN)/spaces evaluate --predictions $(RUN_DIR)/labeled.jsonl --prediction-field extract \
	  --references $(CAIL_DIR)/train.json --user-dict $(CAIL_DIR)/user_dict.txt --output $(RUN_DIR)/oracle-metrics.json
	$(BIN)/spaces extract train --config configs/extract.yaml --input $(RUN_DIR)/labeled.jsonl \
	  --output-dir $(RUN_DIR)/extractor --data.user_dict $(CAIL_DIR)/user_dict.txt
	$(BIN)/spaces evaluate --predictions $(RUN_DIR)/extractor/oof.jsonl --prediction-field extract \
	  --references $(CAIL_DIR)/train.json --user-dict $(CAIL_DIR)/user_dict.txt --output $(RUN_DIR)/extract-metrics.json
	@echo "not yet: the generator stage is still to come; this run stops at the out-of-fold extracts" \
	      "($(RUN_DIR)/extract-metrics.json)."

bench: install
	$(BIN)/python scripts/bench_oracle.py
	$(BIN)/python scripts/bench_rouge.py
	$(BIN)/python scripts/bench_extract.py
	$(BIN)/python scripts/bench_decode.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
