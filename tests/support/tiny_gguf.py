"""Write a tiny random-weight LLaMA model as a GGUF file, using only the standard library.

The model is small enough (under 500 KB: two blocks, 64-wide embeddings) for llama.cpp to load
and serve in a few tens of milliseconds, which makes it a cheap stand-in for a real model in tests.

Format notes (GGUF v3, little endian): a header (magic, version, tensor count, metadata count),
the metadata key/value pairs, one info record per tensor (name, dims innermost first, type,
offset into the data section), padding to ``general.alignment`` (32), then the tensor data, each
tensor starting on an aligned offset.  All tensors here are F32.

The tokenizer is SentencePiece-style ("llama"): ``<unk>``, ``<s>``, ``</s>``, the 256 byte
fallback tokens ``<0x00>``..``<0xFF>`` (so any UTF-8 prompt tokenizes) and one token per printable
ASCII character, with ``▁`` standing for the space.

Dimension 0 of every token embedding is a constant 1.0 "bias" feature.  The blocks' weights are
tiny, so it survives to the final RMS norm, where ``output.weight`` reads it with +2 for printable
ASCII tokens and -2 for all others: a gap of about 20 in log-probability.  Sampling therefore
emits printable ASCII and (in practice) never the end-of-sequence token, so completions always
run to ``max_tokens``.
"""

from __future__ import annotations

import pathlib
import random
import struct
import sys
from array import array

ALIGNMENT = 32
N_EMBD = 64
N_HEAD = 4
N_HEAD_KV = 2
HEAD_DIM = N_EMBD // N_HEAD
N_FF = 128
N_LAYER = 2
N_CTX_TRAIN = 2048

# GGUF metadata value types and ggml tensor types.
_UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY = 4, 5, 6, 7, 8, 9
_GGML_F32 = 0
# llama.cpp token types.
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6

_SPECIALS = ["<unk>", "<s>", "</s>"]
_PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]


def _vocab() -> tuple[list[str], list[int]]:
    """Token texts and their llama.cpp token types."""
    tokens = _SPECIALS + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [c.replace(" ", "\u2581") for c in _PRINTABLE]
    types = [_UNKNOWN, _CONTROL, _CONTROL] + [_BYTE] * 256 + [_NORMAL] * len(_PRINTABLE)
    return tokens, types


def _str(s: str) -> bytes:
    data = s.encode()
    return struct.pack("<Q", len(data)) + data


def _kv(key: str, value_type: int, payload: bytes) -> bytes:
    return _str(key) + struct.pack("<I", value_type) + payload


def _u32(key: str, value: int) -> bytes:
    return _kv(key, _UINT32, struct.pack("<I", value))


def _f32(key: str, value: float) -> bytes:
    return _kv(key, _FLOAT32, struct.pack("<f", value))


def _bool(key: str, value: bool) -> bytes:
    return _kv(key, _BOOL, struct.pack("<?", value))


def _string(key: str, value: str) -> bytes:
    return _kv(key, _STRING, _str(value))


def _array(key: str, item_type: int, items: list[bytes]) -> bytes:
    return _kv(key, _ARRAY, struct.pack("<IQ", item_type, len(items)) + b"".join(items))


def _metadata(tokens: list[str], types: list[int]) -> list[bytes]:
    arch = "llama"
    return [
        _string("general.architecture", arch),
        _string("general.name", "vespid-tiny-llama"),
        _u32("general.alignment", ALIGNMENT),
        _u32("general.file_type", 0),  # all F32
        _u32(f"{arch}.context_length", N_CTX_TRAIN),
        _u32(f"{arch}.embedding_length", N_EMBD),
        _u32(f"{arch}.block_count", N_LAYER),
        _u32(f"{arch}.feed_forward_length", N_FF),
        _u32(f"{arch}.attention.head_count", N_HEAD),
        _u32(f"{arch}.attention.head_count_kv", N_HEAD_KV),
        _f32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5),
        _u32(f"{arch}.rope.dimension_count", HEAD_DIM),
        _f32(f"{arch}.rope.freq_base", 10000.0),
        _u32(f"{arch}.vocab_size", len(tokens)),
        _string("tokenizer.ggml.model", "llama"),
        _array("tokenizer.ggml.tokens", _STRING, [_str(t) for t in tokens]),
        _array("tokenizer.ggml.scores", _FLOAT32, [struct.pack("<f", 0.0) for _ in tokens]),
        _array("tokenizer.ggml.token_type", _INT32, [struct.pack("<i", t) for t in types]),
        _u32("tokenizer.ggml.unknown_token_id", 0),
        _u32("tokenizer.ggml.bos_token_id", 1),
        _u32("tokenizer.ggml.eos_token_id", 2),
        _bool("tokenizer.ggml.add_bos_token", True),
        _bool("tokenizer.ggml.add_eos_token", False),
    ]


def _tensors(
    rng: random.Random, types: list[int]
) -> list[tuple[str, tuple[int, ...], array[float]]]:
    """(name, dims innermost first, F32 data) for every tensor of the model."""

    def randn(*dims: int, std: float = 0.02) -> array[float]:
        count = 1
        for d in dims:
            count *= d
        return array("f", (rng.gauss(0.0, std) for _ in range(count)))

    def ones(n: int) -> array[float]:
        return array("f", [1.0] * n)

    n_vocab = len(types)
    embd = randn(N_EMBD, n_vocab, std=0.1)
    output = randn(N_EMBD, n_vocab, std=0.5)
    for tok, tok_type in enumerate(types):  # the bias feature; see the module docstring
        embd[tok * N_EMBD] = 1.0
        output[tok * N_EMBD] = 2.0 if tok_type == _NORMAL else -2.0

    kv_dim = HEAD_DIM * N_HEAD_KV
    tensors = [
        ("token_embd.weight", (N_EMBD, n_vocab), embd),
        ("output_norm.weight", (N_EMBD,), ones(N_EMBD)),
        ("output.weight", (N_EMBD, n_vocab), output),
    ]
    for i in range(N_LAYER):
        tensors += [
            (f"blk.{i}.attn_norm.weight", (N_EMBD,), ones(N_EMBD)),
            (f"blk.{i}.attn_q.weight", (N_EMBD, N_EMBD), randn(N_EMBD, N_EMBD)),
            (f"blk.{i}.attn_k.weight", (N_EMBD, kv_dim), randn(N_EMBD, kv_dim)),
            (f"blk.{i}.attn_v.weight", (N_EMBD, kv_dim), randn(N_EMBD, kv_dim)),
            (f"blk.{i}.attn_output.weight", (N_EMBD, N_EMBD), randn(N_EMBD, N_EMBD)),
            (f"blk.{i}.ffn_norm.weight", (N_EMBD,), ones(N_EMBD)),
            (f"blk.{i}.ffn_gate.weight", (N_EMBD, N_FF), randn(N_EMBD, N_FF)),
            (f"blk.{i}.ffn_up.weight", (N_EMBD, N_FF), randn(N_EMBD, N_FF)),
            (f"blk.{i}.ffn_down.weight", (N_FF, N_EMBD), randn(N_FF, N_EMBD)),
        ]
    return tensors


def _pad(n: int) -> int:
    return -n % ALIGNMENT


def write_tiny_llama_gguf(path: pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """Write a tiny random LLaMA GGUF model to ``path`` and return ``path``.

    The same ``seed`` always produces the same file.
    """
    tokens, types = _vocab()
    metadata = _metadata(tokens, types)
    tensors = _tensors(random.Random(seed), types)

    infos: list[bytes] = []
    blobs: list[bytes] = []
    offset = 0
    for name, dims, values in tensors:
        if sys.byteorder == "big":
            values.byteswap()
        blob = values.tobytes()
        infos.append(
            _str(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, _GGML_F32, offset)
        )
        blobs.append(blob + b"\0" * _pad(len(blob)))
        offset += len(blobs[-1])

    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    head = header + b"".join(metadata) + b"".join(infos)
    path.write_bytes(head + b"\0" * _pad(len(head)) + b"".join(blobs))
    return path
