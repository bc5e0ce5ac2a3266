"""Copy-constrained beam search: spaces vs plain HF generate vs a SPACES-style decoder, one run.

    python scripts/bench_decode.py [--docs 32] [--beams 3] [--new-tokens 128] [--source-tokens 300]

All three decode the same 32 documents with the same randomly initialised mT5 (the default from-scratch
size) and beam 3, to a fixed length (an untrained model rarely stops early, so the work is equal):
  * spaces: batched beam search over the KV cache with the copy constraint and sparse top-k;
  * HF generate: the same model and beams, no constraint (the floor for any beam search);
  * SPACES style: one document at a time, no KV cache (the decoder reruns the whole prefix each step),
    a Python loop over beams, n-gram sets of the source rebuilt every step.
Targets: spaces / HF generate <= 1.3; SPACES style / spaces >= 10.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spaces.config import DecodeConfig, GenerateModelConfig  # noqa: E402
from spaces.generate.decoding import beam_search  # noqa: E402
from spaces.generate.model import CopyGenerator  # noqa: E402
from spaces.generate.copy import copy_decisions  # noqa: E402
from spaces.generate.sparse_softmax import sparse_log_softmax  # noqa: E402

NEG_INF = float("-inf")


def ngram_sets(source: list[int], n: int) -> dict[tuple, set]:
    """SPACES's get_ngram_set: (n-1)-gram prefix -> tokens that follow it."""
    out: dict[tuple, set] = {}
    for i in range(len(source) - n + 1):
        out.setdefault(tuple(source[i:i + n - 1]), set()).add(source[i + n - 1])
    return out


@torch.inference_mode()
def spaces_style(model, ids: torch.Tensor, mask: torch.Tensor, cfg: DecodeConfig) -> list[list[int]]:
    config = model.config
    eos, pad, K = config.eos_token_id, config.pad_token_id, cfg.num_beams
    results = []
    for row, row_mask in zip(ids, mask):
        source = [t for t in row[row_mask.bool()].tolist() if t not in (eos, pad)]
        enc = model.seq2seq.get_encoder()(input_ids=row[None], attention_mask=row_mask[None])
        hidden = enc.last_hidden_state.expand(K, -1, -1)
        beams, scores, states = [[config.decoder_start_token_id]], [0.0], [0]
        finished = []
        for step in range(cfg.max_new_tokens):
            dec = torch.tensor(beams)
            out = model.seq2seq(encoder_outputs=(hidden[: len(beams)],), attention_mask=row_mask[None].expand(len(beams), -1),
                                decoder_input_ids=dec, output_hidden_states=True)
            logits = out.logits[:, -1].float()
            copy = model.copy_head(out.decoder_hidden_states[-1][:, -1]).float()
            new_states = []
            decisions = copy_decisions(copy, states)  # the same copy decision as spaces makes
            for i in range(len(beams)):  # SPACES: a Python loop over beams, n-gram sets rebuilt each step
                label = decisions[i]
                if label > 0:
                    j = 1 if label == 1 else states[i] + 1
                    table = ngram_sets(source, j)
                    prefix = tuple(beams[i][len(beams[i]) - j + 1:]) if j > 1 else ()
                    if prefix not in table:
                        table, prefix, j = ngram_sets(source, 1), (), 1
                    allowed = torch.zeros_like(logits[i], dtype=torch.bool)
                    allowed[list(table[prefix])] = True
                    logits[i] = logits[i].masked_fill(~allowed, NEG_INF)
                else:
                    j = 0
                new_states.append(j)
            logits[:, pad] = NEG_INF
            logprobs = sparse_log_softmax(logits, cfg.top_k)
            total = (torch.tensor(scores)[:, None] + logprobs).flatten()
            top, idx = total.topk(2 * K)
            next_beams, next_scores, next_states = [], [], []
            V = logits.size(1)
            for rank, (score, flat) in enumerate(zip(top.tolist(), idx.tolist())):
                src, tok = flat // V, flat % V
                if tok == eos:
                    if rank < K and score > NEG_INF:
                        finished.append((score / (step + 1) ** cfg.length_penalty, beams[src][1:]))
                        finished = sorted(finished, key=lambda f: -f[0])[:K]
                    continue
                next_beams.append(beams[src] + [tok])
                next_scores.append(score)
                next_states.append(new_states[src])
                if len(next_beams) == K:
                    break
            if len(finished) == K and not max(next_scores) / (step + 1) ** cfg.length_penalty > finished[-1][0]:
                break  # HF's early stop: no live beam can beat the finished ones
            beams, scores, states = next_beams, next_scores, next_states
        else:
            finished += [(s / len(b) ** cfg.length_penalty, b[1:]) for b, s in zip(beams, scores)]
        results.append(max(finished, key=lambda f: f[0])[1])
    return results


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=32)
    parser.add_argument("--beams", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)  # CAIL summaries: ~190 tokens on average
    parser.add_argument("--source-tokens", type=int, default=300)
    args = parser.parse_args()
    from transformers import MT5Config, MT5ForConditionalGeneration

    m = GenerateModelConfig()
    torch.manual_seed(0)
    vocab = 4000
    seq2seq = MT5ForConditionalGeneration(MT5Config(
        vocab_size=vocab, d_model=m.d_model, d_ff=m.d_ff, d_kv=m.d_kv, num_layers=m.num_layers,
        num_decoder_layers=m.num_layers, num_heads=m.num_heads, feed_forward_proj="gated-gelu",
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    model = CopyGenerator(seq2seq, None).eval()
    with torch.no_grad():
        model.copy_head.bias.copy_(torch.tensor([0.0, 0.5, 2.0]))  # exercise copying: starts and long spans
        seq2seq.lm_head.weight[1] = -1.0  # keep eos unlikely: every method decodes to the full length
    ids = torch.randint(3, vocab, (args.docs, args.source_tokens), generator=torch.Generator().manual_seed(1))
    ids[:, 50:80] = ids[:, 120:150]
    mask = torch.ones_like(ids)
    cfg = DecodeConfig(num_beams=args.beams, max_new_tokens=args.new_tokens, top_k=10, copy_constraint=True,
                       no_repeat_ngram_size=0)
    beam_search(model, ids[:2], mask[:2], cfg)  # warm-up
    ours_s, ours = timed(lambda: beam_search(model, ids, mask, cfg))
    hf_s, _ = timed(lambda: seq2seq.generate(input_ids=ids, attention_mask=mask, num_beams=args.beams,
                                             max_new_tokens=args.new_tokens, early_stopping=True, do_sample=False))
    naive_s, naive = timed(lambda: spaces_style(model, ids, mask, cfg))
    same = sum(a == b for a, b in zip(ours, naive))
    print(f"bench_decode: {args.docs} documents x {args.source_tokens} source tokens, beam {args.beams}, "
          f"{args.new_tokens} new tokens, mT5 d_model {m.d_model} x {m.num_layers} layers, "
          f"{torch.get_num_threads()} threads")
    print(f"  spaces (copy constraint, sparse top-k, batched, KV cache): {ours_s:7.2f} s")
    print(f"  HF generate (same beams, no constraint)                 : {hf_s:7.2f} s   "
          f"ratio spaces/HF {ours_s / hf_s:.2f} (target <= 1.3)")
    print(f"  SPACES style (per document, no cache, n-gram sets/step)  : {naive_s:7.2f} s   "
          f"speed-up {naive_s / ours_s:.1f}x (target >= 10x)")
    print(f"  identical outputs spaces vs SPACES style: {same}/{args.docs}")
    if same != args.docs:
        print("FAIL: the two copy-constrained decoders disagree")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
