"""A CLIP tokenizer for a closed vocabulary, built without files.

Every vocabulary word becomes one token; any other lowercase word falls back to letters, so nothing is
refused. The shapes world warns about such words (``unknown_words``), since its CLIP never saw them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def build_tokenizer(words: Iterable[str], max_length: int = 16) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` whose BPE merges spell each of ``words`` as a single token."""
    vocab: dict[str, int] = {BOS: 0, EOS: 1}
    for char in string.ascii_lowercase + string.digits:
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for word in sorted(set(words), key=lambda w: (-len(w), w)):  # longest first: its merges win
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        merged = pieces[0]
        for piece in pieces[1:]:
            if (merged, piece) not in merges:
                merges.append((merged, piece))
            merged += piece
            vocab.setdefault(merged, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def unknown_words(prompt: str, vocabulary: Iterable[str]) -> list[str]:
    """The words of ``prompt`` outside ``vocabulary``, in order of appearance."""
    known = set(vocabulary)
    return [word for word in re.findall(r"\w+", prompt.lower()) if word not in known]
