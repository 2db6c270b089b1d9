"""The 55 Atari games of the paper: Table K1 names, ALE ROM ids and Reverie task names.

This is the one mapping every module uses (`reverie tasks`, `reverie scores`, `reverie sweep`).
"""

from __future__ import annotations

import csv
import difflib
import re
from importlib import resources

from reverie.errors import TaskError

# Table K1 names whose ALE ROM id is not the plain snake_case of the name.
_SPECIAL = {"James Bond": "jamesbond"}


def _rom_id(table_name: str) -> str:
    return _SPECIAL.get(table_name, re.sub(r"[^a-z0-9]+", "_", table_name.lower()).strip("_"))


def table_k1() -> dict[str, dict[str, float]]:
    """Rows of the paper's Table K1 keyed by ROM id: random, gamer, record, rainbow, iqn, dreamerv2."""
    text = (resources.files("reverie") / "data" / "atari_table_k1.csv").read_text()
    rows = {}
    for row in csv.DictReader(text.splitlines()):
        name = row.pop("game")
        rows[_rom_id(name)] = {"name": name, **{k: float(v) for k, v in row.items()}}
    return rows


TABLE_NAMES: dict[str, str] = {rom: row["name"] for rom, row in table_k1().items()}
ATARI55: tuple[str, ...] = tuple(TABLE_NAMES)  # ROM ids of the paper's 55 games, table order


def canonical_game(name: str) -> str:
    """Map a Table K1 name ("Up N Down"), a ROM id ("up_n_down") or a task ("atari_up_n_down")
    to the ROM id; unknown names raise ``TaskError`` listing the closest matches."""
    key = name.strip()
    if key.startswith("atari_"):
        key = key[len("atari_") :]
    if key in TABLE_NAMES:
        return key
    by_name = {n.lower(): rom for rom, n in TABLE_NAMES.items()}
    if key.lower() in by_name:
        return by_name[key.lower()]
    if _rom_id(key) in TABLE_NAMES:
        return _rom_id(key)
    options = list(TABLE_NAMES) + list(TABLE_NAMES.values())
    close = difflib.get_close_matches(key, options, n=3, cutoff=0.4)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise TaskError(f"unknown Atari game {name!r}: not one of the paper's 55 games (Table K1){hint}")
