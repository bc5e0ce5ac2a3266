"""Batched beam search over the KV cache: SPACES's copy constraint, then transformers' logits processors.

One object per decoding rule. The copy constraint (``copy.CopyConstraint``) masks the logits with
what each beam may copy; everything else is a ``LogitsProcessor`` applied to the log-probabilities, in
this order: repetition penalty, n-gram blocking, minimum length, no padding, ``WholeCharacters`` (byte
pieces only as whole UTF-8 characters), ``NoRepeatedUnit`` (no unit ever four times in a row) and sparse
top-k (``TopKLogitsWarper`` + ``LogitNormalization``: only the k best keep mass, renormalised). The beam
bookkeeping is HF's own: with the constraint off, ``beam_search`` and ``generate`` with the same
processors give the same tokens.
"""

from __future__ import annotations

import weakref

import torch
from transformers import (LogitNormalization, LogitsProcessor, LogitsProcessorList, MinNewTokensLengthLogitsProcessor,
                          NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor,
                          SuppressTokensLogitsProcessor, TopKLogitsWarper)
from transformers.modeling_outputs import BaseModelOutput

from spaces.config import DecodeConfig
from spaces.generate.copy import CopyConstraint, NumberRule
from spaces.text import MAX_UNIT, repeats_at_end

NEG_INF = float("-inf")


class NoRepeatedUnit(LogitsProcessor):
    """Ban a token whose text would end the output in one unit repeated ``MAX_REPEATS + 1`` times
    ("看看看看", "驳回原告的，驳回原告的，…"): the degenerate loops of a small generator, ruled out.

    It checks each row's ``candidates`` best tokens only (placed before the top-k warper, with room to
    spare, so the k tokens that survive it are never all banned and no beam is left with nothing).
    """

    def __init__(self, pieces: list[str], candidates: int, window: int = 4 * MAX_UNIT):
        self.pieces, self.candidates, self.window = pieces, candidates, window

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        top = scores.topk(min(self.candidates, scores.size(-1)), dim=-1)
        banned_rows, banned_cols = [], []
        for row, (values, tokens) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
            tail = None
            for value, token in zip(values, tokens):
                if value == NEG_INF:
                    break
                piece = self.pieces[token] if token < len(self.pieces) else ""
                if not piece:
                    continue
                if tail is None:
                    tail = "".join(self.pieces[t] for t in input_ids[row, -self.window:].tolist()
                                   if t < len(self.pieces))
                if any(repeats_at_end(tail + piece[:k]) for k in range(1, len(piece) + 1)):
                    banned_rows.append(row)
                    banned_cols.append(token)
        if banned_rows:
            scores = scores.clone()
            scores[banned_rows, banned_cols] = NEG_INF
        return scores


def _utf8_lead(value: int) -> tuple[int, range]:
    """Continuation bytes a character starting with ``value`` needs, and the range its second byte takes."""
    if 0xC2 <= value <= 0xDF:
        return 1, range(0x80, 0xC0)
    if 0xE0 <= value <= 0xEF:
        return 2, range(0xA0, 0xC0) if value == 0xE0 else range(0x80, 0xA0) if value == 0xED else range(0x80, 0xC0)
    if 0xF0 <= value <= 0xF4:
        return 3, range(0x90, 0xC0) if value == 0xF0 else range(0x80, 0x90) if value == 0xF4 else range(0x80, 0xC0)
    return 0, range(0)


class WholeCharacters(LogitsProcessor):
    """Byte-fallback pieces only in runs that make whole UTF-8 characters: a character once begun is finished
    (before anything else, the end included), and no run starts on a continuation or an invalid byte.

    A stray or unfinished byte decodes to nothing and takes its neighbours' bytes with it, so the text
    around it joins: "3", <0x87>, "1.5" reads 31.5, a number the judgment never wrote.
    """

    def __init__(self, byte_values: dict[int, int]):
        self.value = byte_values
        self.by_value = {v: i for i, v in byte_values.items()}
        self.never_first = torch.tensor([i for i, v in byte_values.items() if _utf8_lead(v)[0] == 0 and v >= 0x80],
                                        dtype=torch.long)
        self._ids: dict[range, torch.Tensor] = {}  # the pieces of each allowed byte range, built once

    def _pieces(self, allowed: range) -> torch.Tensor:
        if allowed not in self._ids:
            self._ids[allowed] = torch.tensor([self.by_value[v] for v in allowed if v in self.by_value],
                                              dtype=torch.long)
        return self._ids[allowed]

    def _next_bytes(self, row: list[int]) -> range | None:
        """The byte values that may come next in a row that ends inside a character, else None."""
        seen = 0
        for token in reversed(row[-4:]):
            value = self.value.get(token)
            if value is None:
                return None
            if 0x80 <= value < 0xC0:
                seen += 1
                continue
            need, second = _utf8_lead(value)
            if seen >= need:
                return None
            return second if seen == 0 else range(0x80, 0xC0)
        return None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        out = scores.clone()
        out[:, self.never_first.to(scores.device)] = NEG_INF
        for r, row in enumerate(input_ids[:, -4:].tolist()):
            allowed = self._next_bytes(row)
            if allowed is not None:
                keep = self._pieces(allowed).to(scores.device)
                out[r] = NEG_INF
                out[r, keep] = scores[r, keep]
        return out


def decode_processors(cfg: DecodeConfig, eos_id: int, pad_id: int, pieces: list[str] | None,
                      device: str | torch.device = "cpu", byte_values: dict[int, int] | None = None
                      ) -> LogitsProcessorList:
    """The logits processors of a decode config (shared by our beam search and HF's ``generate``)."""
    processors = LogitsProcessorList()
    if cfg.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(cfg.repetition_penalty))
    if cfg.no_repeat_ngram_size:
        processors.append(NoRepeatNGramLogitsProcessor(cfg.no_repeat_ngram_size))
    if cfg.min_new_tokens:
        processors.append(MinNewTokensLengthLogitsProcessor(prompt_length_to_skip=1, min_new_tokens=cfg.min_new_tokens,
                                                            eos_token_id=eos_id, device=str(device)))
    processors.append(SuppressTokensLogitsProcessor([pad_id], device=str(device)))
    if byte_values:
        processors.append(WholeCharacters(byte_values))
    if pieces is not None:
        processors.append(NoRepeatedUnit(pieces, candidates=4 * cfg.top_k))
    processors.append(TopKLogitsWarper(cfg.top_k))
    processors.append(LogitNormalization())
    return processors


_RULES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def number_rule(codec, vocab_size: int, device) -> NumberRule:
    """The codec's number rule, built once (a 250k vocabulary takes seconds) rather than per batch."""
    key = (vocab_size, str(device))
    rules = _RULES.setdefault(codec, {})
    if key not in rules:
        rules[key] = NumberRule.of(codec.pieces, vocab_size, device)
    return rules[key]


def _stuck(logprobs: torch.Tensor, beam_scores: torch.Tensor) -> torch.Tensor:
    """Rows of live beams left without any finite log-probability."""
    return (~torch.isfinite(logprobs).any(-1) & (beam_scores > NEG_INF)).nonzero().flatten()


@torch.inference_mode()
def beam_search(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, cfg: DecodeConfig,
                return_labels: bool = False, processors: LogitsProcessorList | None = None):
    """Best hypothesis per document (token ids without eos); with ``return_labels`` also each token's copy label."""
    device = input_ids.device
    B, K = input_ids.size(0), cfg.num_beams
    eos, pad, start = model.eos_id, model.pad_id, model.config.decoder_start_token_id
    if processors is None:
        codec = model.codec
        processors = decode_processors(cfg, eos, pad, codec.pieces if codec else None, device,
                                       codec.byte_values if codec else None)
    ngram_free = LogitsProcessorList(p for p in processors if not isinstance(p, NoRepeatNGramLogitsProcessor))
    if len(ngram_free) == len(processors):
        ngram_free = processors

    encoded = model.encode(input_ids, attention_mask)
    enc = BaseModelOutput(last_hidden_state=encoded.last_hidden_state.repeat_interleave(K, 0))
    enc_mask = attention_mask.repeat_interleave(K, 0)
    constraint = None
    if cfg.copy_constraint:
        sources = [[t for t in row[mask.bool()].tolist() if t not in (eos, pad)]
                   for row, mask in zip(input_ids, attention_mask)]
        vocab = model.seq2seq.get_output_embeddings().weight.size(0)
        numbers = number_rule(model.codec, vocab, device) if cfg.copy_numbers and model.codec else None
        constraint = CopyConstraint(sources, K, vocab, device, track_labels=return_labels, numbers=numbers)

    def labels_of(row: int) -> list[int]:
        return constraint.labels[row] if return_labels and constraint is not None else []

    tokens = torch.full((B * K, 1), start, dtype=torch.long, device=device)
    beam_scores = torch.zeros(B, K, device=device)
    beam_scores[:, 1:] = NEG_INF  # the K copies of the start state must not all be expanded
    beam_scores = beam_scores.view(-1)
    finished: list[list[tuple[float, list[int], list[int]]]] = [[] for _ in range(B)]
    done = [False] * B
    cache = None

    for step in range(cfg.max_new_tokens):
        logits, copy_logits, cache = model(None, enc_mask, decoder_input_ids=tokens[:, -1:], encoder_outputs=enc,
                                           cache=cache, use_cache=True)
        logits = logits[:, -1].float()
        vocab = logits.size(-1)
        if constraint is None:
            logprobs = processors(tokens, torch.log_softmax(logits, dim=-1))
        else:
            allowed = constraint.allowed(copy_logits[:, -1], tokens[:, -1].tolist())
            masked = torch.log_softmax(logits.masked_fill(~allowed, NEG_INF), dim=-1)
            logprobs = processors(tokens, masked)
            # where n-gram blocking leaves a live beam nothing it may copy, copying wins (a statute's title is
            # copied again whole); where the other rules still leave nothing, the beam stops copying, but the
            # number rule never yields (it is the other rules that do, if they leave nothing even then)
            stuck = _stuck(logprobs, beam_scores)
            if len(stuck) and ngram_free is not processors:
                logprobs[stuck] = ngram_free(tokens[stuck], masked[stuck])
                stuck = _stuck(logprobs, beam_scores)
            if len(stuck):
                free = torch.log_softmax(logits[stuck].masked_fill(~constraint.release(stuck.tolist()), NEG_INF), -1)
                ruled = processors(tokens[stuck], free.clone())
                logprobs[stuck] = torch.where(torch.isfinite(ruled).any(-1, keepdim=True), ruled, free)

        scores = (beam_scores[:, None] + logprobs).view(B, K * vocab)
        top_scores, top_idx = scores.topk(2 * K, dim=1)
        top_scores, top_idx = top_scores.tolist(), top_idx.tolist()
        next_src, next_tok, next_scores = [], [], []
        for b in range(B):
            chosen = 0
            if not done[b]:
                for rank, (score, flat) in enumerate(zip(top_scores[b], top_idx[b])):
                    src, tok = b * K + flat // vocab, flat % vocab
                    if tok == eos:
                        if rank < K and score > NEG_INF:  # HF: only the top K may finish, the best K are kept
                            finished[b].append((score / (step + 1) ** cfg.length_penalty, tokens[src, 1:].tolist(),
                                                labels_of(src)))
                            finished[b] = sorted(finished[b], key=lambda h: -h[0])[:K]
                        continue
                    next_src.append(src)
                    next_tok.append(tok)
                    next_scores.append(score)
                    chosen += 1
                    if chosen == K:
                        break
                # HF's early stop (early_stopping=False): done once K are finished and the best live beam,
                # at its current length, no longer beats the worst of them
                best_live = max(next_scores[len(next_scores) - chosen:], default=NEG_INF)
                done[b] = len(finished[b]) == K and not (
                    best_live / (step + 1) ** cfg.length_penalty > finished[b][-1][0])
            for _ in range(K - chosen):  # finished documents (or too few candidates) keep placeholder beams
                next_src.append(b * K)
                next_tok.append(pad)
                next_scores.append(NEG_INF)
        if all(done):
            break
        beam_idx = torch.tensor(next_src, device=device)
        tokens = torch.cat([tokens[beam_idx], torch.tensor(next_tok, device=device)[:, None]], dim=1)
        beam_scores = torch.tensor(next_scores, device=device)
        cache.reorder_cache(beam_idx)
        if constraint is not None:
            constraint.advance(next_src, next_tok)

    best = []
    for b in range(B):
        hyps = finished[b]
        if not done[b]:  # out of steps: the live beams compete as they are
            for i in range(b * K, b * K + K):
                score = beam_scores[i].item()
                if score > NEG_INF:
                    hyps.append((score / tokens.size(1) ** cfg.length_penalty, tokens[i, 1:].tolist(), labels_of(i)))
        score, seq, labels = max(hyps, key=lambda h: h[0]) if hyps else (0.0, [], [])
        best.append((seq, labels if constraint is not None else [0] * len(seq)) if return_labels else seq)
    return best
