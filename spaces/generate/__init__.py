"""Generate stage: rewrite an extract into the summary (T5-family seq2seq with SPACES's copy mechanism)."""
