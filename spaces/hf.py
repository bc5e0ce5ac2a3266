"""Quiet Hugging Face loading: its load reports and shard bars are noise in a CLI's output."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def hf_quiet():
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
