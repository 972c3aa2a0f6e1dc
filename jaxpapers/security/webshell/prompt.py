"""The prompt builder shared by every LLM backend.

A query is a chat conversation (OpenAI-style ``{"role", "content"}`` messages): a
system instruction, then each in-context demonstration as a user turn (the code) with
the assistant's answer (``yes``/``no``), then the file in question. The same messages
go to the local Flax model (through its chat template) and to an HTTP backend, so the
two see identical prompts.

What the code shown is depends on the method:

* **plain** prompting shows the file itself, cut to the token budget from its start;
* **BFAD** shows the Context-Aware Code Extraction and, as a one-line header, the
  critical functions the filter found with their categories (our choice: the paper's
  filter output is what the extraction is built from; stating it costs a few tokens
  and lets a small model see behaviour that obfuscation hides in the code text).

The answer is a single word, so a backend can score it with label-constrained
decoding (the log-probabilities of ``yes`` and ``no``) or read it from generated text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

SYSTEM = (
    "You are a security analyst. A WebShell is a malicious PHP script that gives an "
    "attacker remote control of a web server: it runs code or commands taken from the "
    "request, often hidden by obfuscation. Answer 'yes' if the PHP code is a WebShell "
    "and 'no' if it is benign. Answer with one word."
)
QUESTION = "Is this PHP code a WebShell? Answer yes or no."
ANSWERS = ("no", "yes")  # index = label (1 = WebShell)


@dataclasses.dataclass(frozen=True)
class Shown:
    """What the model is shown of one file: code text and an optional header line."""

    code: str
    header: str = ""


def user_turn(shown: Shown) -> str:
    header = f"{shown.header}\n" if shown.header else ""
    return f"{header}```php\n{shown.code}\n```\n{QUESTION}"


def critical_header(calls: Sequence) -> str:
    """``Critical functions: eval (code_execution), ...`` from the filter's calls."""
    seen: dict[str, str] = {}
    for call in calls:
        seen.setdefault(call.name, call.category)
    if not seen:
        return "Critical functions: none found."
    listed = ", ".join(f"{name} ({category})" for name, category in seen.items())
    return f"Critical functions: {listed}."


def conversation(
    query: Shown, demonstrations: Sequence[tuple[Shown, int]] = (), *, system: str = SYSTEM
) -> list[dict[str, str]]:
    """The messages for one query after ``demonstrations`` (shown code, label)."""
    messages = [{"role": "system", "content": system}]
    for shown, label in demonstrations:
        if label not in (0, 1):
            raise ValueError(f"a demonstration's label must be 0 or 1, got {label!r}")
        messages.append({"role": "user", "content": user_turn(shown)})
        messages.append({"role": "assistant", "content": ANSWERS[label]})
    messages.append({"role": "user", "content": user_turn(query)})
    return messages


_ANSWER = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def parse_answer(text: str) -> int | None:
    """1 for an answer whose first word is yes, 0 for no, None otherwise ("Not sure")."""
    match = _ANSWER.match(text)
    if match is None:
        return None
    return int(match.group(1).lower() == "yes")
