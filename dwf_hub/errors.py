"""Exceptions with messages that name the file, key, shape or value at fault."""


class DWFError(ValueError):
    """Base class of every error dwf_hub raises on bad input (a ``ValueError``); the CLI prints these without a
    traceback, and each keeps what caused it (``__cause__``)."""


class WeightFormatError(DWFError, ValueError):
    """A state dict or weight file does not match the architecture (keys, shapes, dtype, NaN/Inf)."""


class ZooFormatError(DWFError, ValueError):
    """A zoo directory or repository is missing files, is corrupt, or has an unknown format version."""


class PipelineFormatError(DWFError, ValueError):
    """A pipeline directory or repository is missing a component or was not written by dwf_hub."""


class UnknownNameError(DWFError, KeyError):
    """An architecture, recipe, dataset, init scheme or solver name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def unknown(kind: str, name: object, known: list[str]) -> UnknownNameError:
    return UnknownNameError(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")
