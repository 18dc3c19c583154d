"""Hugging Face Hub snapshots for every model family (GPT-2 and the Llama family use it alike).

Fetching is huggingface_hub's ``snapshot_download``, which already honours HF_HUB_OFFLINE (use the cache
only), HF_HOME / HF_HUB_CACHE (where the cache is), HF_TOKEN (gated or private repos) and revisions (a
branch, a tag or a commit); we only restrict it to the files a checkpoint needs and turn its errors into
one-line InputErrors. huggingface_hub is imported when a snapshot is needed, not before, so commands that
never touch the Hub do not pay for it.

This module sits beside ``fhectl.errors``, below the model packages, and imports nothing else from fhectl.
"""

from __future__ import annotations

from pathlib import Path

from fhectl.errors import InputError


def looks_like_path(spec: str) -> bool:
    """Whether ``spec`` must be a local path rather than a repo id ("name" or "org/name")."""
    return spec.endswith(".gguf") or spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec


def snapshot(repo_id: str, allow_patterns: list[str], revision: str | None = None) -> Path:
    """The local snapshot folder of Hugging Face repo ``repo_id`` at ``revision`` (default: main), holding
    the files that match ``allow_patterns``; downloaded into the Hugging Face cache unless already there."""
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        folder = huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=allow_patterns)
    except (HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, OSError, ValueError) as err:
        # Offline without a cached copy, unknown or gated repo, bad id, network down: one line each.
        text = str(err).strip()
        first_line = text.splitlines()[0] if text else type(err).__name__
        raise InputError(f"cannot get Hugging Face repo {repo_id!r} (revision {revision or 'main'}): "
                         f"{first_line}") from err
    return Path(folder)


def is_not_cached(err: InputError) -> bool:
    """Whether a ``snapshot`` error means only that the repo is not in the cache and the Hub was not asked."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    return isinstance(err.__cause__, LocalEntryNotFoundError)
