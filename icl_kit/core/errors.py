"""The kit's own error type: one clear sentence naming the thing and the fix; and the helpers that keep a
sentence about many things short (their count and the first few, never the whole list)."""

from __future__ import annotations

import re
from collections.abc import Iterable

ITEM_WIDTH = 40  # characters of one shown item (a long path keeps its end: the file name)
ENTRIES_WIDTH = 100  # characters of the shown entries of `joined`


class KitError(ValueError):
    """A problem the user can fix (bad params, missing file, malformed input).

    The CLI prints only the message, never a traceback from deep inside.
    """


def plural(noun: str, n: int) -> str:
    """'query' -> 'queries' for n != 1 (English regular plurals: the nouns the kit's messages count)."""
    if n == 1:
        return noun
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def shorten(text: str, width: int = ITEM_WIDTH) -> str:
    """`text` within `width` characters; a longer one keeps its end (a path's file name) after an ellipsis."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def few(items: Iterable[object], noun: str = "item", limit: int = 3) -> str:
    """How many items and the first `limit` of them, in their order: '5 ids (1001, 1002, 1003, …)',
    '1 id (1001)', 'no ids'. Each shown item is cut to ITEM_WIDTH characters, so the phrase stays short for
    a list of any length."""
    items = list(items)
    if not items:
        return f"no {plural(noun, 0)}"
    shown = ", ".join(shorten(str(i)) for i in items[:limit])
    more = ", …" if len(items) > limit else ""
    return f"{len(items)} {plural(noun, len(items))} ({shown}{more})"


def distinct_first(entries: list[str]) -> list[str]:
    """The entries with the first of each kind of problem first (entries that differ only in their numbers are
    one kind), so a cut list still shows every kind there is."""
    seen: set[str] = set()
    firsts, rest = [], []
    for entry in entries:
        shape = re.sub(r"\d+", "#", entry)
        (rest if shape in seen else firsts).append(entry)
        seen.add(shape)
    return firsts + rest


def joined(entries: Iterable[str], sep: str = "; ", width: int = ENTRIES_WIDTH) -> str:
    """Free-text entries (one per bad item) joined while they fit in `width` characters, the last one shown
    cut with '…', then '(and N more)': the first entries' own words, within one short sentence."""
    entries = distinct_first([str(e) for e in entries])
    if len(entries) == 1:  # one problem: its whole sentence
        return entries[0]
    kinds = min(len({re.sub(r"\d+", "#", e) for e in entries}), 3)
    each = width // max(kinds, 1)  # several kinds of problem: room for the first of each (up to 3)
    out, used = [], 0
    for entry in entries:
        room = min(width - used - (len(sep) if out else 0), each)
        if out and room < 12:  # too little room to say anything of the next entry
            break
        out.append(entry if len(entry) <= room else entry[: max(room - 1, 11)].rstrip() + "…")
        used += len(out[-1]) + (len(sep) if len(out) > 1 else 0)
    rest = len(entries) - len(out)
    return sep.join(out) + (f" (and {rest} more)" if rest else "")
