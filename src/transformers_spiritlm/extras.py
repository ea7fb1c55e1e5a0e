"""How to install the optional extras (`[web]`, `[train]`, `[yaapt]`, `[eval]`, `[gguf]`, `[dev]`), for every message that
asks for one."""

import importlib
from types import ModuleType


class MissingExtraError(ModuleNotFoundError):
    """An optional extra is not installed; the message names the `pip install` command that adds it. The `spiritlm`
    commands print it as one error line."""


def install_hint(extra: str) -> str:
    """The `pip install` command that adds the extra `extra`, from a package index and from a clone of the
    repository."""
    return f"pip install 'transformers-spiritlm[{extra}]' (from a clone: pip install -e '.[{extra}]')"


def import_extra(module: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Imports `module` of the extra `extra`, or raises [`MissingExtraError`] saying that `purpose` (by default, `module`
    itself) needs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != module.split(".")[0]:
            raise
        what = purpose or module
        raise MissingExtraError(
            f"{what} needs the [{extra}] extra ({module} is not installed): {install_hint(extra)}", name=error.name
        ) from None


__all__ = ["MissingExtraError", "import_extra", "install_hint"]
