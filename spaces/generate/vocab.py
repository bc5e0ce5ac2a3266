"""Tokenizers for the generator: trained from scratch, pruned from a big one, or grown by compound words.

A from-scratch tokenizer is a sentencepiece unigram model trained on the training text with identity
normalisation (sentencepiece's default NFKC would turn '，' into ',' and cost ROUGE) and byte fallback
(any character round-trips). It is rebuilt as a ``tokenizers`` object so it saves and loads as an
ordinary HF fast tokenizer; T5's conventions hold: pad 0 (also the decoder start), eos 1, unk 2.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

SPECIALS = {"<pad>": 0, "</s>": 1, "<unk>": 2}


def _wrap(tok):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def _unigram_tokenizer(pieces: list[tuple[str, float]], byte_fallback: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.Unigram(pieces, unk_id=SPECIALS["<unk>"], byte_fallback=byte_fallback))
    # No dummy '▁' in front: then '▁' only ever stands for a real space and leading spaces round-trip.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=False)
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁",
                                                                                 prepend_scheme="never")])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", SPECIALS["</s>"])])
    for name, idx in SPECIALS.items():
        assert pieces[idx][0] == name
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
            split_digits=True, num_threads=2, minloglevel=2,
        )
        sp = spm.SentencePieceProcessor(model_file=str(Path(tmp) / "spm.model"))
        pieces = [(sp.id_to_piece(i), 0.0 if sp.is_control(i) or sp.is_unknown(i) else sp.get_score(i))
                  for i in range(sp.get_piece_size())]
    return _wrap(_unigram_tokenizer(pieces, byte_fallback=True))


def prune_vocab(model, tokenizer, texts: Iterable[str]):
    """Keep the tokens the texts use (plus specials): embedding rows sliced, ids remapped in order.

    Only for unigram (sentencepiece-style) tokenizers, which mT5 and T5-PEGASUS use.
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state["model"]["type"] != "Unigram":
        raise ValueError("vocabulary pruning needs a unigram tokenizer")
    used = set(tokenizer.all_special_ids)
    for text in texts:
        used.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    used.update(SPECIALS.values())
    keep = sorted(i for i in used if i < len(state["model"]["vocab"]))
    remap = {old: new for new, old in enumerate(keep)}
    state["model"]["vocab"] = [state["model"]["vocab"][i] for i in keep]
    state["model"]["unk_id"] = remap.get(state["model"]["unk_id"], SPECIALS["<unk>"])
    state["added_tokens"] = [dict(t, id=remap[t["id"]]) for t in state.get("added_tokens", []) if t["id"] in remap]
    post = state.get("post_processor") or {}
    for special in (post.get("special_tokens") or {}).values():
        special["ids"] = [remap[i] for i in special["ids"]]
    from tokenizers import Tokenizer

    new_tokenizer = _wrap(Tokenizer.from_str(json.dumps(state)))
    index = torch.tensor(keep)
    with torch.no_grad():
        old_in = model.get_input_embeddings().weight
        new_in = torch.nn.Embedding(len(keep), old_in.size(1))
        new_in.weight.copy_(old_in[index])
        old_out = model.get_output_embeddings()
        tied = old_out is not None and old_out.weight.data_ptr() == old_in.data_ptr()
        model.set_input_embeddings(new_in)
        if old_out is not None and not tied:
            new_out = torch.nn.Linear(old_out.in_features, len(keep), bias=False)
            new_out.weight.copy_(old_out.weight[index])
            model.set_output_embeddings(new_out)
    model.config.vocab_size = len(keep)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model, new_tokenizer


def add_compound_words(model, tokenizer, words: Sequence[str]) -> int:
    """Add words as whole tokens, each initialised as the mean of its current sub-token embeddings."""
    words = [w for w in dict.fromkeys(w.strip() for w in words) if w and w not in tokenizer.get_vocab()]
    pieces = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
    added = tokenizer.add_tokens(words)
    if not added:
        return 0
    model.resize_token_embeddings(len(tokenizer))
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        for word, ids in zip(words, pieces):
            emb[tokenizer.convert_tokens_to_ids(word)] = emb[ids].mean(0)
    return added
