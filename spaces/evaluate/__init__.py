"""Evaluate stage: the CAIL2020 score of predicted summaries against reference summaries."""
