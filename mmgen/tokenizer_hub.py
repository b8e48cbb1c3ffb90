"""Where a tokenizer sits in a Hugging Face Hub repo, and its config: `load_tokenizer`'s reading of a Hub id.

A pipeline repo names its tokenizer in model_index.json (vqvae/, movq/, or any component of a tokenizer class); a
repo without one holds it at its root or in vqvae/ or movq/, as a local folder is read (`find_tokenizer_folder`).
Offline, or for a repo the Hub does not have, one request says so and only the local cache is read.
"""

from __future__ import annotations

from pathlib import Path

from .tokenizers import FOLDERS_SAID, TOKENIZER_CLASSES, TOKENIZER_FOLDERS, read_json


def _bare_config(fetch) -> tuple[str | None, dict]:
    """A repo without model_index.json: the tokenizer at its root, or in vqvae/ or movq/ (as a local folder is
    read, `find_tokenizer_folder`; e.g. vqgan-f8's layout)."""
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    for folder in (None, *TOKENIZER_FOLDERS):
        try:
            return folder, fetch("config.json", folder)
        except EntryNotFoundError as e:
            if isinstance(e, LocalEntryNotFoundError) or folder == TOKENIZER_FOLDERS[-1]:
                raise


def hub_config(repo_id: str, subfolder: str | None) -> tuple[str | None, dict]:
    """(subfolder, config) of a tokenizer on the Hub: the standard Hub download (cached; offline if it is). One
    request first: when the Hub cannot be reached (or has no such repo) only the cache is read, at once (a download
    retried for 25 s, printing each retry, before saying so)."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        huggingface_hub.HfApi().repo_info(repo_id)
        unanswered = None
    except Exception as e:  # offline, no such repo, gated: what the cache holds, if anything
        unanswered = e
    cache_only = unanswered is not None

    def fetch(filename: str, folder: str | None = None) -> dict:
        path = huggingface_hub.hf_hub_download(repo_id, filename, subfolder=folder, local_files_only=cache_only)
        return read_json(Path(path))

    try:
        if subfolder is None:
            try:
                index = fetch("model_index.json")
            except EntryNotFoundError as e:
                if isinstance(e, LocalEntryNotFoundError):  # offline and not cached: not a missing file
                    raise
                return _bare_config(fetch)
            found = next((f for f in TOKENIZER_FOLDERS if f in index), None)
            found = found or next(
                (k for k, v in index.items() if isinstance(v, list) and v[-1] in TOKENIZER_CLASSES), None
            )
            if found is None:
                raise ValueError(f"{repo_id}: this pipeline has no VQ tokenizer (no {FOLDERS_SAID} component)")
            subfolder = found
        return subfolder, fetch("config.json", subfolder)
    except ValueError:
        raise
    except Exception as e:  # offline, unknown repo, gated: the Hub's own message says which
        why = e if unanswered is None else unanswered  # with no answer, the cache's "not here" says nothing new
        first_line = str(why).strip().splitlines()[0] if str(why).strip() else ""
        raise ValueError(
            f"{repo_id}: no such folder, and it could not be loaded from the Hugging Face Hub "
            f"({type(why).__name__}: {first_line}{'; not in the local cache either' if cache_only else ''})"
        ) from e
