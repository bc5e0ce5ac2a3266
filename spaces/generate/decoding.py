"""Batched beam search with SPACES's copy constraint and sparse top-k, over the KV cache.

The copy head labels each step of each beam: 0 free, 1 start a copied span, 2 continue it (2 is not
allowed right after a 0). Starting a span restricts the token to the source's tokens; continuing a
span of length m restricts it to the tokens that follow that m-gram where it occurs in the source,
falling back to any source token (a new span) when it occurs nowhere. Instead of rebuilding n-gram
sets each step as SPACES did, each beam carries the source positions where its current span ends:
the allowed next tokens are the tokens after those positions, and the index of token positions is
built once per document.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutput

from spaces.config import DecodeConfig
from spaces.generate.copy import COPY_CONTINUE, COPY_START, NOT_COPIED
from spaces.generate.sparse_softmax import sparse_log_softmax

NEG_INF = float("-inf")


@dataclass
class SourceIndex:
    """Where each token occurs in one source document."""

    tokens: list[int]
    positions: dict[int, tuple[int, ...]]

    @classmethod
    def of(cls, tokens: list[int]) -> SourceIndex:
        positions: dict[int, list[int]] = {}
        for p, t in enumerate(tokens):
            positions.setdefault(t, []).append(p)
        return cls(tokens, {t: tuple(ps) for t, ps in positions.items()})

    def continuations(self, ends: tuple[int, ...]) -> list[int]:
        """Tokens that follow a span ending at any of ``ends``."""
        n = len(self.tokens)
        return list({self.tokens[p + 1] for p in ends if p + 1 < n})

    def extend(self, ends: tuple[int, ...], token: int) -> tuple[int, ...]:
        n = len(self.tokens)
        return tuple(p + 1 for p in ends if p + 1 < n and self.tokens[p + 1] == token)


def _banned_ngrams(seq: list[int], n: int) -> list[int]:
    """Tokens that would repeat an n-gram already in ``seq``."""
    if n <= 0 or len(seq) < n - 1:
        return []
    if n == 1:
        return seq
    prefix = seq[len(seq) - n + 1:]
    return [seq[i + n - 1] for i in range(len(seq) - n + 1) if seq[i:i + n - 1] == prefix]


@torch.inference_mode()
def beam_search(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, cfg: DecodeConfig,
                return_labels: bool = False):
    """Best hypothesis per document (token ids without eos); with ``return_labels`` also each token's copy label."""
    device = input_ids.device
    B, K = input_ids.size(0), cfg.num_beams
    config = model.config
    eos, pad, start = config.eos_token_id, config.pad_token_id, config.decoder_start_token_id
    vocab = model.seq2seq.get_output_embeddings().out_features
    specials = {eos, pad}
    sources = [SourceIndex.of([t for t in row[mask.bool()].tolist() if t not in specials])
               for row, mask in zip(input_ids, attention_mask)]
    source_masks = torch.zeros(B, vocab, dtype=torch.bool, device=device)
    for b, src in enumerate(sources):
        source_masks[b, list(src.positions)] = True

    encoded = model.seq2seq.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
    enc = BaseModelOutput(last_hidden_state=encoded.last_hidden_state.repeat_interleave(K, 0))
    enc_mask = attention_mask.repeat_interleave(K, 0)
    doc_of = [i // K for i in range(B * K)]

    tokens = torch.full((B * K, 1), start, dtype=torch.long, device=device)
    labels_so_far: list[list[int]] = [[] for _ in range(B * K)]
    beam_scores = torch.zeros(B, K, device=device)
    beam_scores[:, 1:] = NEG_INF  # the K copies of the start state must not all be expanded
    beam_scores = beam_scores.view(-1)
    span_len = [0] * (B * K)
    span_ends: list[tuple[int, ...]] = [()] * (B * K)
    finished: list[list[tuple[float, list[int], list[int]]]] = [[] for _ in range(B)]
    done = [False] * B
    cache = None

    for step in range(cfg.max_new_tokens):
        logits, copy_logits, cache = model(None, enc_mask, decoder_input_ids=tokens[:, -1:], encoder_outputs=enc,
                                           cache=cache, use_cache=True)
        logits = logits[:, -1].float()
        step_labels = [NOT_COPIED] * (B * K)
        if cfg.copy_constraint:
            copy_logits = copy_logits[:, -1].float().clone()
            copy_logits[torch.tensor(span_len, device=device) == 0, COPY_CONTINUE] = NEG_INF
            step_labels = copy_logits.argmax(-1).tolist()
            keep = torch.ones_like(logits, dtype=torch.bool)
            start_rows, cont_rows, cont_cols = [], [], []
            for i, label in enumerate(step_labels):
                if label == COPY_CONTINUE:
                    nxt = sources[doc_of[i]].continuations(span_ends[i])
                    if nxt:
                        cont_rows += [i] * len(nxt)
                        cont_cols += nxt
                        keep[i] = False
                        continue
                    step_labels[i] = label = COPY_START  # the span occurs nowhere further: start a new one
                if label == COPY_START:
                    start_rows.append(i)
            if start_rows:
                keep[start_rows] = source_masks[[doc_of[i] for i in start_rows]]
            if cont_rows:
                keep[cont_rows, cont_cols] = True
            logits = logits.masked_fill(~keep, NEG_INF)
        logprobs = sparse_log_softmax(logits, cfg.top_k)
        logprobs[:, pad] = NEG_INF
        if step < cfg.min_new_tokens:
            logprobs[:, eos] = NEG_INF
        if cfg.no_repeat_ngram_size:
            generated = tokens[:, 1:].tolist()
            for i, seq in enumerate(generated):
                banned = _banned_ngrams(seq, cfg.no_repeat_ngram_size)
                if banned:
                    logprobs[i, banned] = NEG_INF

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
                        if rank < K and score > NEG_INF:
                            finished[b].append((score / (step + 1) ** cfg.length_penalty, tokens[src, 1:].tolist(),
                                                labels_so_far[src]))
                        continue
                    next_src.append(src)
                    next_tok.append(tok)
                    next_scores.append(score)
                    chosen += 1
                    if chosen == K:
                        break
                if len(finished[b]) >= K:
                    done[b] = True
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
        new_len, new_ends, new_labels = [], [], []
        for src, tok in zip(next_src, next_tok):
            label = step_labels[src]
            source = sources[doc_of[src]]
            if label == COPY_CONTINUE:
                new_len.append(span_len[src] + 1)
                new_ends.append(source.extend(span_ends[src], tok))
            elif label == COPY_START:
                new_len.append(1)
                new_ends.append(source.positions.get(tok, ()))
            else:
                new_len.append(0)
                new_ends.append(())
            new_labels.append(labels_so_far[src] + [label] if return_labels else labels_so_far[src])
        span_len, span_ends, labels_so_far = new_len, new_ends, new_labels

    best = []
    for b in range(B):
        hyps = finished[b]
        if not done[b]:  # out of steps: the live beams compete as they are
            for i in range(b * K, b * K + K):
                score = beam_scores[i].item()
                if score > NEG_INF:
                    hyps.append((score / tokens.size(1) ** cfg.length_penalty, tokens[i, 1:].tolist(),
                                 labels_so_far[i]))
        score, seq, labels = max(hyps, key=lambda h: h[0]) if hyps else (0.0, [], [])
        best.append((seq, labels) if return_labels else seq)
    return best
