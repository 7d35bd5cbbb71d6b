"""The one exception type for bad user input: the CLI turns it into exit code 2 and one line."""
from __future__ import annotations

import difflib


class AttnsimError(ValueError):
    """A user-facing error: a bad name, shape, parameter or file. The message is one line."""


class UnsupportedCore(AttnsimError):
    """A kernel family has no kernel for this attention core (head dims, a latent cache, no legal tile):
    another family may have one."""


def suggest(name: str, allowed) -> str:
    """' (did you mean X?)' when a close name exists, else ''."""
    close = difflib.get_close_matches(str(name).lower(), [str(a) for a in allowed], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(kind: str, name: str, allowed) -> AttnsimError:
    allowed = sorted(allowed)
    return AttnsimError(f"unknown {kind} {name!r}{suggest(name, allowed)}; allowed: {', '.join(allowed)}")
