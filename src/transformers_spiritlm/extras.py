"""How to install the optional extras (`[web]`, `[train]`, `[yaapt]`, `[eval]`, `[dev]`), for every message that asks
for one."""

import importlib


def install_hint(extra: str) -> str:
    """The `pip install` command that adds the extra `extra`, from a package index and from a clone of the
    repository."""
    return f"pip install 'transformers-spiritlm[{extra}]' (from a clone: pip install -e '.[{extra}]')"


def import_extra(module: str, extra: str):
    """`module`, which the extra `extra` installs; when it is missing, a `ModuleNotFoundError` that says how to
    install it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != module.split(".")[0]:
            raise
        raise ModuleNotFoundError(
            f"{module} is not installed; it comes with the [{extra}] extra: {install_hint(extra)}", name=error.name
        ) from None


__all__ = ["import_extra", "install_hint"]
