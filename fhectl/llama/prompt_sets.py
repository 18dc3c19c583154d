"""The shipped prompt sets: ``calibration`` (fits the circuits' domains) and ``evaluation`` (held out, scored).

Both are JSON lines, {"id", "kind", "text"}, written for this project and disjoint by construction (different
topics, languages and code); ``tests/llama/test_llama_prompt_sets.py`` checks that they share no text.
Calibration never reads the evaluation set.
"""

from __future__ import annotations

import json
from importlib import resources

from fhectl.errors import InputError

NAMES = ("calibration", "evaluation")


def load_prompt_set(name: str) -> list[dict]:
    if name not in NAMES:
        raise InputError(f"unknown prompt set {name!r}; choose one of {', '.join(NAMES)}")
    text = resources.files("fhectl.llama").joinpath("prompts", f"{name}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
