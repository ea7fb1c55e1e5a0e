"""How to install the optional extras (`[web]`, `[train]`, `[yaapt]`, `[dev]`), for every message that asks for one."""


def install_hint(extra: str) -> str:
    """The `pip install` command that adds the extra `extra`, from a package index and from a clone of the
    repository."""
    return f"pip install 'transformers-spiritlm[{extra}]' (from a clone: pip install -e '.[{extra}]')"


__all__ = ["install_hint"]
