"""spaces: extract-then-generate summarization of long Chinese legal judgments (SPACES, CAIL2020).

    from spaces import Summarizer
    summarize = Summarizer.load("runs/cail2020/extractor", "runs/cail2020/generator/model-best")
    print(summarize("判决书全文…"))
"""

__version__ = "0.2.0"
__all__ = ["Summarizer", "__version__"]


def __getattr__(name: str):
    if name == "Summarizer":  # imported on use: the CLI should not pay for torch before it needs it
        from spaces.summarize import Summarizer

        return Summarizer
    raise AttributeError(f"module 'spaces' has no attribute {name!r}")
