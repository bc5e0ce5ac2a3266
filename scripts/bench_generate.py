"""Real size before anyone rents a GPU: an mT5-base-shaped generator, timed where this runs.

    python scripts/bench_generate.py [--cail-dir ../shared/cail2020] [--source 1024] [--target 256]
                                     [--batch-size 8] [--decode-docs 4] [--new-tokens 128] [--device cpu|cuda]

Builds a randomly initialised model of mT5-base's shape (d_model 768, 12 + 12 layers, 12 heads, d_ff 2048,
gated-GELU, an untied 250,112-row output layer) with a 250k-piece unigram tokenizer (every CJK character,
ASCII, and made-up multi-character pieces, mT5's size), then reports:

  * pruning the vocabulary to the CAIL2020 sample's text: seconds and the rows kept;
  * one training step (AdamW, copy head, sparse softmax) at SOURCE x BATCH tokens: seconds (the second of
    two steps; the first warms up) and the peak memory of the process (RSS on a CPU, allocated on a GPU);
  * decoding DECODE_DOCS documents with beam 3 and the copy constraint: new tokens per second.

With --device cuda the model runs in bf16 (what configs/paper/generate.yaml trains with).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.cail import CAIL_DIR, cail_documents  # noqa: E402

from spaces.config import DecodeConfig, GenerateConfig  # noqa: E402
from spaces.generate.codec import TextCodec  # noqa: E402
from spaces.generate.data import pad_sources, pad_targets  # noqa: E402
from spaces.generate.decoding import beam_search  # noqa: E402
from spaces.generate.model import CopyGenerator  # noqa: E402
from spaces.generate.train import compute_loss  # noqa: E402
from spaces.generate.vocab import prune_vocab  # noqa: E402

VOCAB = 250_112


def big_tokenizer():
    """A unigram tokenizer of mT5's size: specials, ASCII, every CJK character, then made-up pieces."""
    import random

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<pad>", "</s>", "<unk>", "▁"] + [chr(c) for c in range(33, 127)] + [chr(c) for c in range(0x4E00, 0xA000)]
    rng = random.Random(0)
    cjk = [chr(c) for c in range(0x4E00, 0x9FA6)]
    seen = set(pieces)
    while len(pieces) < VOCAB - 12:
        piece = "".join(rng.choice(cjk) for _ in range(rng.randint(2, 4)))
        if piece not in seen:
            seen.add(piece)
            pieces.append(piece)
    tok = Tokenizer(models.Unigram([(p, 0.0 if i < 3 else -10.0 - i * 1e-5) for i, p in enumerate(pieces)], unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def peak_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cail-dir", type=Path, default=CAIL_DIR)
    parser.add_argument("--source", type=int, default=1024)
    parser.add_argument("--target", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--decode-docs", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    from transformers import MT5Config, MT5ForConditionalGeneration

    _, documents = cail_documents(args.cail_dir)
    texts = [d.text for d in documents] + [d.summary for d in documents if d.summary]
    torch.manual_seed(0)
    start = time.perf_counter()
    tokenizer = big_tokenizer()
    seq2seq = MT5ForConditionalGeneration(MT5Config(vocab_size=VOCAB, d_model=768, d_kv=64, d_ff=2048, num_layers=12,
                                                    num_decoder_layers=12, num_heads=12, feed_forward_proj="gated-gelu"))
    seq2seq.lm_head = torch.nn.Linear(768, VOCAB, bias=False)  # mT5's output layer is its own
    built = time.perf_counter() - start
    params = sum(p.numel() for p in seq2seq.parameters())
    start = time.perf_counter()
    seq2seq, tokenizer = prune_vocab(seq2seq, tokenizer, texts)
    pruned = time.perf_counter() - start
    kept = seq2seq.get_input_embeddings().weight.size(0)
    print(f"bench_generate: mT5-base shape, {params / 1e6:.0f}M parameters, {VOCAB:,}"
          f"-row vocabulary, device {args.device}, {torch.get_num_threads()} threads (built in {built:.1f} s)")
    print(f"  prune vocabulary to the sample's text: {pruned:6.2f} s, {VOCAB:,} -> {kept:,} rows, "
          f"{sum(p.numel() for p in seq2seq.parameters()) / 1e6:.0f}M parameters left")
    model = CopyGenerator(seq2seq, TextCodec.for_model(tokenizer, seq2seq.config)).to(args.device)
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model.to(dtype)
    config = GenerateConfig()
    codec = model.codec
    body = codec.body("".join(texts))
    sources = [(body * 2)[i * 97: i * 97 + args.source - 1] + [codec.eos_id] for i in range(args.batch_size)]
    targets = [(body * 2)[i * 53: i * 53 + args.target - 1] + [codec.eos_id] for i in range(args.batch_size)]
    ids, mask = pad_sources(sources, codec.pad_id)
    labels, copy = pad_targets(targets, [[0] * len(t) for t in targets])
    batch = [x.to(args.device) for x in (ids, mask, labels, copy)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    step_s = 0.0
    for _ in range(2):
        start = time.perf_counter()
        loss = compute_loss(model, batch, config, model.decoder_inputs(batch[2]))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if args.device == "cuda":
            torch.cuda.synchronize()
        step_s = time.perf_counter() - start
    print(f"  training step, source {args.source} x batch {args.batch_size} (target {args.target}): {step_s:8.2f} s, "
          f"peak memory {peak_mb(args.device):,.0f} MB")
    model.eval()
    cfg = DecodeConfig(num_beams=3, max_new_tokens=args.new_tokens, copy_constraint=True, no_repeat_ngram_size=0,
                       min_new_tokens=args.new_tokens)
    docs = args.decode_docs
    ids, mask = pad_sources([(body * 2)[i * 97: i * 97 + args.source - 1] + [codec.eos_id] for i in range(docs)],
                            codec.pad_id)
    start = time.perf_counter()
    out = beam_search(model, ids.to(args.device), mask.to(args.device), cfg)
    seconds = time.perf_counter() - start
    new = sum(len(o) for o in out)
    print(f"  decode, {docs} documents x beam 3, copy constraint: {new} new tokens in {seconds:.2f} s, "
          f"{new / seconds:.1f} tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
