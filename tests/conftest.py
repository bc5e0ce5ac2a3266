import json
import os
from pathlib import Path

import pytest
from hypothesis import settings

# make test (and CI) draws the same property-test examples every run, so a red build names a change, not
# luck; HYPOTHESIS_PROFILE=explore draws new ones each run (how the number rule's last holes were found).
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
JUDGMENTS = FIXTURES / "judgments.jsonl"
USER_DICT = FIXTURES / "user_dict.txt"
CAIL_DIR = HERE.parent.parent / "shared" / "cail2020"
# A generator small enough to train in seconds (the --overrides of `generate train`)
TINY = ["--model.name_or_path", "null", "--model.vocab_size", "300", "--model.d_model", "32", "--model.d_ff", "64",
        "--model.num_layers", "1", "--model.num_heads", "2", "--model.d_kv", "16", "--train.batch_size", "2",
        "--decode.max_new_tokens", "12", "--train.validation", "0.25", "--train.eval_every", "1",
        "--train.learning_rate", "0.001"]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def cail_records():
    """The 20 real CAIL2020 records, read in place (never copied into the repo)."""
    path = CAIL_DIR / "train.json"
    if not path.is_file():
        pytest.skip(f"real CAIL2020 sample not found at {path} (it lives in ../shared/cail2020)")
    return read_jsonl(path)


@pytest.fixture(scope="session")
def cail_user_dict():
    path = CAIL_DIR / "user_dict.txt"
    if not path.is_file():
        pytest.skip(f"CAIL2020 user dictionary not found at {path}")
    return path


@pytest.fixture
def interrupt_after(monkeypatch):
    """``stop = interrupt_after(n)``: the next run is interrupted (as by Ctrl-C) after writing n records,
    which leaves a real partial output, fingerprint and all; ``stop()`` lets runs finish again."""
    from spaces.records import JsonlWriter

    original = JsonlWriter.write

    def arm(n: int):
        written = 0

        def write(self, record):
            nonlocal written
            if written == n:
                raise KeyboardInterrupt
            written += 1
            original(self, record)

        monkeypatch.setattr(JsonlWriter, "write", write)
        return lambda: monkeypatch.setattr(JsonlWriter, "write", original)

    return arm


def mark_first_record(partial, **fields):
    """Change the first record of a partial output (a redone record would lose the change)."""
    first, *rest = partial.read_text(encoding="utf-8").split("\n")
    partial.write_text("\n".join([json.dumps(dict(json.loads(first), **fields), ensure_ascii=False), *rest]),
                       encoding="utf-8")


def document_text(record):
    return "\n".join(s["sentence"] for s in record["text"])


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Converted encoders and vector caches go to a per-run folder, never the user's cache."""
    import os

    old = os.environ.get("SPACES_CACHE")
    os.environ["SPACES_CACHE"] = str(tmp_path_factory.mktemp("spaces-cache"))
    yield
    if old is None:
        os.environ.pop("SPACES_CACHE", None)
    else:
        os.environ["SPACES_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A randomly initialised BERT with a character vocabulary from the fixture judgments, saved as an HF dir."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    chars = sorted({c for r in read_jsonl(JUDGMENTS) for c in document_text(r) + r["summary"] if not c.isspace()})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *chars])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Strip()
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]")
    import torch

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=128), add_pooling_layer=False)
    path = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def edit_tiny(encoder: Path) -> list[str]:
    """An editor small enough to train in seconds (the --overrides of `generate train --config configs/edit.yaml`)."""
    return ["--model.name_or_path", str(encoder), "--model.layers", "null", "--model.max_length", "64",
            "--model.freeze_embeddings", "false", "--train.batch_size", "2", "--train.validation", "0.25",
            "--train.learning_rate", "0.001", "--train.epochs", "2"]
