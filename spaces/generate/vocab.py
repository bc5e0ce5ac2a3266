"""Generator vocabularies: trained from scratch, pruned from a big one, or grown by compound words.

A from-scratch tokenizer is a sentencepiece unigram model trained on the training text with identity
normalisation (sentencepiece's default NFKC would turn '，' into ',' and cost ROUGE) and byte fallback
(any character round-trips). It is rebuilt as a ``tokenizers`` object so it saves and loads as an
ordinary HF fast tokenizer; T5's conventions hold: pad 0 (also the decoder start), eos 1, unk 2.

Pruning keeps the tokens the training text uses (and every special token) for any tokenizer model
(unigram, BPE, WordPiece) and any seq2seq family: every embedding, output layer and output bias with
a vocabulary-sized dimension is sliced, tied weights stay tied, and the special ids in the model's
configs are remapped, so the pruned dir reloads with ``from_pretrained`` alone and its logits on the
kept ids equal the unpruned model's.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from spaces.errors import SpacesError

SPECIALS = {"<pad>": 0, "</s>": 1, "<unk>": 2}
SPECIAL_ID_KEYS = ("pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id", "sep_token_id",
                   "cls_token_id", "unk_token_id", "mask_token_id", "forced_bos_token_id", "forced_eos_token_id")
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _wrap(tok, like=None):
    """An HF fast tokenizer around a ``tokenizers`` object, with the special tokens of ``like``."""
    from transformers import PreTrainedTokenizerFast

    if like is None:
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    specials = {k: str(getattr(like, k)) for k in SPECIAL_TOKEN_KEYS if getattr(like, k, None) is not None}
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=like.model_max_length, **specials)


def _unigram_tokenizer(pieces: list[tuple[str, float]], byte_fallback: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.Unigram(pieces, unk_id=SPECIALS["<unk>"], byte_fallback=byte_fallback))
    # No dummy '▁' in front: then '▁' only ever stands for a real space and leading spaces round-trip.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=False)
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁",
                                                                                 prepend_scheme="never")])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", SPECIALS["</s>"])])
    return tok


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A sentencepiece unigram tokenizer trained on ``texts``, as a HF fast tokenizer.

    The vocabulary is raised where needed to hold every character of the text plus the 256 byte
    pieces and the specials (sentencepiece refuses to train otherwise).
    """
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        chars: set[str] = set()
        with open(corpus, "w", encoding="utf-8") as f:
            for text in texts:
                line = text.replace("\n", " ")
                chars.update(line)
                f.write(line + "\n")
        vocab_size = max(vocab_size, len(chars) + 256 + len(SPECIALS))
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(tmp) / "spm"), model_type="unigram", vocab_size=vocab_size,
            normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
            byte_fallback=True,
            character_coverage=0.9995, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False,
            split_digits=True, num_threads=1, minloglevel=2,
        )
        sp = spm.SentencePieceProcessor(model_file=str(Path(tmp) / "spm.model"))
        pieces = [(sp.id_to_piece(i), 0.0 if sp.is_control(i) or sp.is_unknown(i) else sp.get_score(i))
                  for i in range(sp.get_piece_size())]
    return _wrap(_unigram_tokenizer(pieces, byte_fallback=True))


# ---- pruning ----------------------------------------------------------------------------------------

def _configs(model) -> list:
    """The model's config and every sub-config (an encoder-decoder has one per side) and generation config."""
    out, todo = [], [model.config, getattr(model, "generation_config", None)]
    while todo:
        config = todo.pop()
        if config is None or any(config is c for c in out):
            continue
        out.append(config)
        todo += [getattr(config, side, None) for side in ("encoder", "decoder")]
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and not any(config is c for c in out):
            out.append(config)
    return out


def _special_ids(model, tokenizer) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    for config in _configs(model):
        for key in SPECIAL_ID_KEYS:
            value = getattr(config, key, None)
            ids.update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
    return ids


def _prune_tokenizer_state(state: dict, keep: list[int]) -> dict:
    remap = {old: new for new, old in enumerate(keep)}
    model = state["model"]
    kind = model["type"]
    if kind == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in keep]
        if model.get("unk_id") is not None:
            model["unk_id"] = remap[model["unk_id"]]
    elif kind in ("WordPiece", "WordLevel", "BPE"):
        model["vocab"] = {tok: remap[i] for tok, i in model["vocab"].items() if i in remap}
        if kind == "BPE":
            vocab = model["vocab"]
            merges = [m if isinstance(m, list) else m.split(" ", 1) for m in model["merges"]]
            model["merges"] = [m for m in merges if m[0] in vocab and m[1] in vocab and m[0] + m[1] in vocab]
    else:
        raise SpacesError(f"vocabulary pruning does not support {kind} tokenizers (unigram, BPE and WordPiece do)",
                          "model.prune_vocab")
    state["added_tokens"] = [dict(t, id=remap[t["id"]]) for t in state.get("added_tokens") or [] if t["id"] in remap]
    post = state.get("post_processor") or {}
    for processor in [post, *(post.get("processors") or [])]:
        for special in (processor.get("special_tokens") or {}).values():
            special["ids"] = [remap[i] for i in special["ids"]]
        for key in ("sep", "cls"):  # BertProcessing / RobertaProcessing: [token, id]
            if isinstance(processor.get(key), list):
                processor[key] = [processor[key][0], remap[processor[key][1]]]
    return state


def _merge_parts(model: dict, used: set[int]) -> set[int]:
    """A BPE token is built by merges from smaller ones: keep every token the kept ones are built from."""
    vocab, ids = model["vocab"], {i: t for t, i in model["vocab"].items()}
    parts = {}
    for merge in model["merges"]:
        a, b = merge if isinstance(merge, list) else merge.split(" ", 1)
        parts.setdefault(a + b, (a, b))
    todo, out = [ids[i] for i in used if i in ids], set()
    while todo:
        token = todo.pop()
        for part in parts.get(token, ()):
            if part in vocab and vocab[part] not in out and vocab[part] not in used:
                out.add(vocab[part])
                todo.append(part)
    return out


def _reindex_vocabulary(model, index: torch.Tensor, old_size: int) -> None:
    """Row k of every tensor with a vocabulary-sized dimension becomes its row ``index[k]`` (a new zero row
    where ``index[k]`` is -1): pruning and growing alike. Shared tensors stay shared; configs follow."""
    replaced: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for kind, table in (("parameter", module._parameters), ("buffer", module._buffers)):
            for name, tensor in list(table.items()):
                if tensor is None:
                    continue
                if isinstance(module, (nn.Embedding, nn.Linear)) and name in ("weight", "bias") \
                        and tensor.size(0) == old_size:
                    dim = 0
                elif "bias" in name and tensor.dim() in (1, 2) and tensor.size(-1) == old_size:
                    dim = tensor.dim() - 1  # BERT's LM-head bias [V], BART/Pegasus final_logits_bias [1, V]
                else:
                    continue
                if id(tensor) not in replaced:
                    data = tensor.detach().index_select(dim, index.clamp(min=0)).clone()
                    data.index_fill_(dim, (index < 0).nonzero().flatten(), 0.0)
                    replaced[id(tensor)] = nn.Parameter(data, tensor.requires_grad) if kind == "parameter" else data
                table[name] = replaced[id(tensor)]
        if isinstance(module, nn.Embedding) and module.num_embeddings == old_size:
            module.num_embeddings = len(index)
            if module.padding_idx is not None:
                module.padding_idx = int((index == module.padding_idx).nonzero()[0, 0])
        if isinstance(module, nn.Linear) and module.out_features == old_size:
            module.out_features = len(index)
    for config in _configs(model):
        if getattr(config, "vocab_size", None) == old_size:
            config.vocab_size = len(index)


def vocabulary_size(model) -> int:
    return model.get_input_embeddings().weight.size(0)


def single_characters(tokenizer) -> set[int]:
    """Ids of the tokens that are one character (贷, ▁贷, ##贷): what any text falls back to."""
    return {i for token, i in tokenizer.get_vocab().items()
            if len(token.removeprefix("##").replace("▁", "").replace("Ġ", "")) == 1}


def prune_vocab(model, tokenizer, texts: Iterable[str], encode=None):
    """Keep the tokens ``texts`` use, every single-character token and every special token: (model,
    tokenizer) on the kept ids, in order.

    The single characters keep every judgment encodable: pruned to the tokens of a few training records
    alone, new judgments met <unk> wherever they used a character those records lacked (贷 of 民间借贷),
    which decodes to nothing, so copies lost characters and statute titles came out wrong.
    ``encode`` tokenises a text (default: the tokenizer without special tokens; jieba pre-tokenisation
    passes its own).
    """
    from tokenizers import Tokenizer

    encode = encode or (lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    old_size = vocabulary_size(model)
    used = _special_ids(model, tokenizer) | single_characters(tokenizer)
    for text in texts:
        used.update(encode(text))
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state["model"]["type"] == "BPE":
        used |= _merge_parts(state["model"], used)
    keep = sorted(i for i in used if 0 <= i < old_size)
    remap = {old: new for new, old in enumerate(keep)}
    state = _prune_tokenizer_state(state, keep)
    new_tokenizer = _wrap(Tokenizer.from_str(json.dumps(state)), like=tokenizer)
    with torch.no_grad():
        _reindex_vocabulary(model, torch.tensor(keep), old_size)
    for config in _configs(model):
        for key in SPECIAL_ID_KEYS:
            value = getattr(config, key, None)
            if isinstance(value, int):
                setattr(config, key, remap[value])
            elif isinstance(value, list):
                setattr(config, key, [remap[v] for v in value])
    return model, new_tokenizer


def add_compound_words(model, tokenizer, words: Sequence[str], encode=None) -> int:
    """Add words as whole tokens, each initialised as the mean of its current sub-token embeddings.

    Works for any tokenizer kind (added tokens match before the model's own pieces); an untied output
    layer gets the same mean of its rows.
    """
    encode = encode or (lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    vocab = tokenizer.get_vocab()
    words = [w for w in dict.fromkeys(w.strip() for w in words) if w and w not in vocab]
    pieces = [encode(w) for w in words]
    old_size = vocabulary_size(model)
    added = tokenizer.add_tokens(words)
    if not added:
        return 0
    with torch.no_grad():
        if len(tokenizer) > old_size:
            _reindex_vocabulary(model, torch.cat([torch.arange(old_size), torch.full((len(tokenizer) - old_size,), -1)]),
                                old_size)
        tables = [model.get_input_embeddings().weight]
        out = model.get_output_embeddings()
        if out is not None and all(out.weight is not t for t in tables):
            tables.append(out.weight)
        for word, ids in zip(words, pieces):
            new = tokenizer.convert_tokens_to_ids(word)
            for table in tables:
                table[new] = table[ids].mean(0)
    return added
