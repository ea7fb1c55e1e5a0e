"""Scripts that convert the official SPIRIT LM files to Hugging Face repos."""


class ConversionError(ValueError):
    """A missing, unreadable or unsupported official file; the message says which and what to do."""
