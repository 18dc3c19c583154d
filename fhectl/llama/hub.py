"""Turn a Llama-family checkpoint spec (a folder, a .gguf file or a Hugging Face repo id) into a local path.

Fetching is ``fhectl.hub.snapshot`` (huggingface_hub's snapshot_download, honouring HF_HUB_OFFLINE, HF_HOME /
HF_HUB_CACHE, HF_TOKEN and revisions), restricted to the files a Llama checkpoint needs.
"""

from pathlib import Path

from fhectl.errors import InputError
from fhectl.hub import looks_like_path, snapshot

CHECKPOINT_FILES = ["config.json", "*.safetensors", "tokenizer.json", "tokenizer_config.json"]


def resolve_checkpoint(spec: str | Path, revision: str | None = None) -> Path:
    """A local folder or .gguf file as is; otherwise the snapshot folder of Hugging Face repo `spec`."""
    path = Path(spec).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".gguf"):
        return path
    if path.exists():
        raise InputError(f"checkpoint {path} is neither a folder nor a .gguf file")
    if isinstance(spec, Path) or looks_like_path(spec):
        raise InputError(f"checkpoint {path} does not exist")
    return snapshot(spec, CHECKPOINT_FILES, revision=revision)
