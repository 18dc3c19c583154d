"""Turn a checkpoint spec (a folder, a .gguf file or a Hugging Face repo id) into a local path.

Fetching is huggingface_hub's snapshot_download, which already honours HF_HUB_OFFLINE (use the
cache only), HF_HOME / HF_HUB_CACHE (where the cache is) and HF_TOKEN (gated repos); we only
restrict it to the files a Llama checkpoint needs and turn its errors into one-line InputErrors.
"""

from pathlib import Path

import huggingface_hub
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

from fhectl.errors import InputError

CHECKPOINT_FILES = ["config.json", "*.safetensors", "tokenizer.json", "tokenizer_config.json"]


def _looks_like_path(spec: str) -> bool:
    # A repo id is "name" or "org/name"; anything else the user typed must have meant a file.
    return spec.endswith(".gguf") or spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec


def resolve_checkpoint(spec: str | Path, revision: str | None = None) -> Path:
    """A local folder or .gguf file as is; otherwise the snapshot folder of Hugging Face repo `spec`."""
    path = Path(spec).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".gguf"):
        return path
    if path.exists():
        raise InputError(f"checkpoint {path} is neither a folder nor a .gguf file")
    if isinstance(spec, Path) or _looks_like_path(spec):
        raise InputError(f"checkpoint {path} does not exist")
    try:
        folder = huggingface_hub.snapshot_download(spec, revision=revision, allow_patterns=CHECKPOINT_FILES)
    except (HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, OSError) as err:
        # Offline without a cached copy, unknown or gated repo, bad id, network down: one line each.
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"cannot get Hugging Face repo {spec!r} (revision {revision or 'main'}): "
                         f"{first_line}") from err
    return Path(folder)
