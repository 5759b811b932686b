"""CLIP's byte-level BPE tokenizer on the ``tokenizers`` package.

A model directory carries ``tokenizer.json``; ``build_clip_tokenizer`` makes one from the
original ``bpe_simple_vocab_16e6.txt.gz`` (MIT, shipped in open-clip-torch's wheel) exactly
as CLIP defines it: 49,408 tokens, start 49406, end 49407, NFC + whitespace clean-up +
lower-casing, context 77 with the end token kept when a text is truncated. Every text is
padded to the full context the same way every time (int8 towers shift if padding varies).
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Tokenizer

START, END = "<|startoftext|>", "<|endoftext|>"
SPLIT_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which CLIP's BPE is built on."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def clip_vocab_and_merges(bpe_gz: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary and merges CLIP derives from its BPE file (openai/CLIP's SimpleTokenizer)."""
    lines = gzip.open(bpe_gz, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    symbols = list(_bytes_to_unicode().values())
    symbols = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [START, END]
    return {s: i for i, s in enumerate(symbols)}, merges


def build_clip_tokenizer(bpe_gz: Path) -> "Tokenizer":
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    vocab, merges = clip_vocab_and_merges(bpe_gz)
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                              end_of_word_suffix="</w>", fuse_unk=False, unk_token=END))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([START, END])
    tokenizer.post_processor = processors.RobertaProcessing(
        (END, vocab[END]), (START, vocab[START]), trim_offsets=False, add_prefix_space=False)
    return tokenizer


CHARS_PER_TOKEN = 32
"""Texts are cut to context_length x this many characters before tokenizing: the tokenizers
library reads a text whole before truncating it (a 76,000-character prompt cost 60 ms and
2 MB), and no text fills a 77-token context with fewer characters per token than this
(whitespace runs aside), so the cut never changes the ids."""
MAX_TOKENIZER_BYTES = 200_000_000
"""tokenizer.json of the largest multilingual text towers is ~20 MB: a larger file is not one."""


class ClipTokenizer:
    """Texts -> (n, context_length) int64 token ids, padded to the full context.

    Any ``tokenizer.json`` works (CLIP's BPE, SigLIP's sentencepiece models, XLM-R): its own
    normaliser and post-processor add what the model expects; ``pad_token`` (default: CLIP's
    end token) fills the rest, and ``canonicalize`` applies open_clip's SigLIP clean-up
    (lower case, no punctuation) first."""

    def __init__(self, tokenizer: "Tokenizer", context_length: int = 77, pad_token: str | None = None,
                 canonicalize: bool = False, prefix: str = ""):
        self.context_length, self.canonicalize, self.prefix = context_length, canonicalize, prefix
        self._tokenizer = tokenizer
        pad_token = pad_token or END
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"pad token {pad_token!r} is not in the tokenizer's vocabulary")
        tokenizer.enable_truncation(max_length=context_length)
        tokenizer.enable_padding(length=context_length, pad_id=pad_id, pad_token=pad_token)

    @classmethod
    def from_file(cls, path: Path, context_length: int = 77, pad_token: str | None = None,
                  canonicalize: bool = False, prefix: str = "") -> "ClipTokenizer":
        from tokenizers import Tokenizer

        from columnist.files import read_regular_file

        text = read_regular_file(path, MAX_TOKENIZER_BYTES).decode("utf-8")  # never a FIFO that never ends
        return cls(Tokenizer.from_str(text), context_length, pad_token, canonicalize, prefix)

    def __call__(self, texts: Sequence[str]) -> "np.ndarray":
        return self.encode(texts)[0]

    def token_id(self, token: str) -> int | None:
        """The id of a whole token (an NLLB language code), or None when it has none."""
        return self._tokenizer.token_to_id(token)

    def encode(self, texts: Sequence[str], prefix: str | None = None) -> tuple["np.ndarray", "np.ndarray"]:
        """Token ids and attention masks, both (n, context_length) int64; ``prefix`` replaces
        the tokenizer's own (an NLLB language code)."""
        import numpy as np

        longest = self.context_length * CHARS_PER_TOKEN
        texts = [t[:longest] for t in texts]
        texts = [_canonical(t) for t in texts] if self.canonicalize else texts
        prefix = self.prefix if prefix is None else prefix
        texts = [prefix + t for t in texts] if prefix else texts
        encodings = self._tokenizer.encode_batch(texts)
        shape = (len(texts), self.context_length)
        return (np.array([e.ids for e in encodings], dtype=np.int64).reshape(shape),
                np.array([e.attention_mask for e in encodings], dtype=np.int64).reshape(shape))


def _canonical(text: str) -> str:
    """open_clip's ``clean='canonicalize'``: punctuation removed, lower case, single spaces."""
    import string

    return " ".join(text.translate(str.maketrans("", "", string.punctuation)).lower().split())
