"""Scripts that convert the official SPIRIT LM files to Hugging Face repos."""

import json
from pathlib import Path


class ConversionError(ValueError):
    """A missing, unreadable or unsupported official file; the message says which and what to do."""


def read_json(path: Path, what: str, error: type[ValueError] = ConversionError):
    """The JSON value in the official `what` file `path`: `FileNotFoundError` when it is absent, `error` when it is
    not valid JSON."""
    if not path.is_file():
        raise FileNotFoundError(f"official {what} file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as cause:
        raise error(f"{path} is not valid JSON ({cause})") from None
