"""spaces: extract-then-generate summarization of long Chinese legal judgments (SPACES, CAIL2020)."""

__version__ = "0.1.0"
