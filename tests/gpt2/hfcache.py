"""A Hugging Face cache made by a test, laid out as huggingface_hub lays it out (no network needed):

    <cache>/models--<org>--<name>/blobs/<sha256>              file contents
    <cache>/models--<org>--<name>/snapshots/<commit>/<file>   symlinks into blobs/
    <cache>/models--<org>--<name>/refs/<ref>                  the commit a branch or tag names
"""

import hashlib
import tempfile
from pathlib import Path

from fhectl.gpt2.tokenizer import _package_data_dir
from fhectl.gpt2.weights import save_weights


def make_hf_snapshot(cache: Path, repo_id: str, commit: str, weights, ref: str | None = "main",
                     tokenizer: bool = True) -> Path:
    """Snapshot `commit` of `repo_id` holding `weights` (config.json, model.safetensors) and, with
    `tokenizer`, GPT-2's published vocab.json and merges.txt; returns the snapshot folder."""
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        save_weights(weights, tmp)
        for name in ("config.json", "model.safetensors"):
            files[name] = (Path(tmp) / name).read_bytes()
    if tokenizer:
        data = _package_data_dir()  # OpenAI's files: the same bytes as the Hub's vocab.json and merges.txt
        files["vocab.json"] = (data / "encoder.json").read_bytes()
        files["merges.txt"] = (data / "vocab.bpe").read_bytes()
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob.name))
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot
