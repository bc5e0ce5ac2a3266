"""The generator: any T5-family seq2seq model plus SPACES's copy head, saved as one directory.

The copy head (linear → 3 classes: not copied / starts a copied span / continues it) reads the
decoder's last hidden state, not the LM logits: MT5 ties its output layer to the embeddings, so a
head on the logits would fight the vocabulary. The directory is the seq2seq model's and tokenizer's
``save_pretrained`` files plus ``copy_head.safetensors``, so ``from_pretrained`` still loads the
seq2seq part on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from spaces.config import GenerateModelConfig
from spaces.errors import SpacesError
from spaces.hf import hf_quiet

COPY_HEAD = "copy_head.safetensors"


class CopyGenerator(nn.Module):
    def __init__(self, seq2seq, tokenizer):
        super().__init__()
        self.seq2seq = seq2seq
        self.tokenizer = tokenizer
        self.copy_head = nn.Linear(seq2seq.config.d_model, 3)

    @property
    def config(self):
        return self.seq2seq.config

    def forward(self, input_ids, attention_mask, decoder_input_ids=None, encoder_outputs=None, cache=None,
                use_cache=False):
        """LM logits [B, T, V], copy logits [B, T, 3] and the decoder cache."""
        out = self.seq2seq(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                           encoder_outputs=encoder_outputs, cache=cache, use_cache=use_cache,
                           output_hidden_states=True)
        return out.logits, self.copy_head(out.decoder_hidden_states[-1]), out.cache

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        return self.seq2seq._shift_right(labels)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        with hf_quiet():
            self.seq2seq.save_pretrained(path)
            self.tokenizer.save_pretrained(path)
        save_file({k: v.contiguous() for k, v in self.copy_head.state_dict().items()}, str(path / COPY_HEAD))

    @classmethod
    def load(cls, path: Path) -> CopyGenerator:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        if not (Path(path) / COPY_HEAD).is_file():
            raise SpacesError(f"not a generator model dir (no {COPY_HEAD}); train one with 'spaces generate train'",
                              str(path))
        try:
            with hf_quiet():
                seq2seq = AutoModelForSeq2SeqLM.from_pretrained(path)
                tokenizer = AutoTokenizer.from_pretrained(path)
            model = cls(seq2seq, tokenizer)
            model.copy_head.load_state_dict(load_file(str(Path(path) / COPY_HEAD)))
        except (OSError, ValueError, RuntimeError, json.JSONDecodeError, SafetensorError) as e:
            raise SpacesError(f"corrupt generator model dir: {str(e).splitlines()[0]}", str(path)) from None
        return model.eval()


def build_generator(config: GenerateModelConfig, texts: list[str]) -> CopyGenerator:
    """A pretrained checkpoint (its tokenizer kept, optionally pruned) or a from-scratch mT5."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, MT5Config, MT5ForConditionalGeneration

    from spaces.generate.vocab import add_compound_words, prune_vocab, train_tokenizer

    if config.name_or_path:
        try:
            with hf_quiet():
                tokenizer = AutoTokenizer.from_pretrained(config.name_or_path)
                seq2seq = AutoModelForSeq2SeqLM.from_pretrained(config.name_or_path)
        except (OSError, ValueError) as e:
            raise SpacesError(f"cannot load generator {config.name_or_path!r}: {str(e).splitlines()[0]}") from None
        if config.prune_vocab:
            seq2seq, tokenizer = prune_vocab(seq2seq, tokenizer, texts)
    else:
        tokenizer = train_tokenizer(texts, config.vocab_size)
        seq2seq = MT5ForConditionalGeneration(MT5Config(
            vocab_size=len(tokenizer), d_model=config.d_model, d_ff=config.d_ff, d_kv=config.d_kv,
            num_layers=config.num_layers, num_decoder_layers=config.num_layers, num_heads=config.num_heads,
            dropout_rate=0.1, feed_forward_proj="gated-gelu", tie_word_embeddings=True,
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        ))
        # transformers 5 ties MT5's LM head to the embeddings without T5's d_model^-0.5 rescaling, so
        # embeddings drawn at T5's std 1.0 start with logits in the tens; draw them at d_model^-0.5.
        with torch.no_grad():
            seq2seq.shared.weight.normal_(0.0, config.d_model ** -0.5)
    if config.compound_words:
        path = Path(config.compound_words)
        if not path.is_file():
            raise SpacesError("compound word list not found", str(path))
        words = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        add_compound_words(seq2seq, tokenizer, words)
    return CopyGenerator(seq2seq, tokenizer)
