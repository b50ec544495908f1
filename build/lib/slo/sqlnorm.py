"""SQL statement normalization: two runs of one statement must compare equal.

Counting repeated queries and attributing time to "a statement" only works when
`SELECT * FROM t WHERE id = 1` and `select *  from t where id=2` are one statement, and
`IN (1, 2, 3)` and `IN (4)` are one too. Literals become `?`, IN-lists and VALUES rows
collapse, whitespace is folded and keywords are upper-cased (identifiers are lower-cased:
SQL folds unquoted identifiers anyway).
"""

from __future__ import annotations

import re
from functools import lru_cache

_STRING = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(r"(?<![\w.$])[-+]?(?:0x[0-9a-f]+|\d+(?:\.\d+)?(?:e[-+]?\d+)?)\b", re.I)
_PARAM = re.compile(r"(?:%\(\w+\)s|%s|\$\d+|:\w+|\?)")
_WS = re.compile(r"\s+")
_IN_LIST = re.compile(r"\bIN\s*\(\s*\?(?:\s*,\s*\?)*\s*\)", re.I)
_VALUES = re.compile(r"\bVALUES\s*\(\s*\?(?:\s*,\s*\?)*\s*\)(?:\s*,\s*\(\s*\?(?:\s*,\s*\?)*\s*\))*", re.I)
_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*", re.S)
_PUNCT = re.compile(r"\s*(<=|>=|<>|!=|=|<|>|,|\(|\))\s*")


@lru_cache(maxsize=65536)
def normalize(statement: str) -> str:
    """The statement with literals as `?`, lists collapsed, whitespace and case folded."""
    s = _COMMENT.sub(" ", statement or "")
    s = _STRING.sub("?", s)
    s = _PARAM.sub("?", s)
    s = _NUMBER.sub("?", s)
    s = _WS.sub(" ", s).strip().rstrip(";").strip()
    s = _PUNCT.sub(lambda m: f" {m.group(1)} ", s)
    s = _WS.sub(" ", s).strip().replace(" ,", ",").replace("( ", "(").replace(" )", ")")
    s = _IN_LIST.sub("IN (?)", s)
    s = _VALUES.sub("VALUES (?)", s)
    return s.upper()


def short(statement: str, width: int = 80) -> str:
    """A one-line abbreviation for tables and messages: `SELECT ... FROM inventory WHERE ...`."""
    s = normalize(statement)
    return s if len(s) <= width else s[: width - 3] + "..."
