"""The prompt through the text encoders the latent model families share: a CLIP's penultimate hidden states and
pooled output (SDXL, SD3), and T5's last hidden states (SD3, Flux). Each tokenizes to a fixed length, as the
models were trained."""

from __future__ import annotations

from typing import Any

import torch


def clip_states_and_pooled(
    tokenizer: Any, encoder: Any, texts: list[str], device: torch.device, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, L, D) the encoder's penultimate hidden states and its first output: the pooled projection of a
    ``CLIPTextModelWithProjection`` ((N, P)), a plain CLIP's last hidden states otherwise."""
    tokens = tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    output = encoder(tokens.input_ids.to(device), output_hidden_states=True)
    return output.hidden_states[-2], output[0]


def t5_states(tokenizer: Any, encoder: Any, texts: list[str], device: torch.device, length: int) -> torch.Tensor:
    """(N, length, D) T5's last hidden states, in the encoder's dtype."""
    tokens = tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    return encoder(tokens.input_ids.to(device), output_hidden_states=False)[0].to(encoder.dtype)
