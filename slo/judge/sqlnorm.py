"""SQL statement normalization: two runs of one statement must compare equal.

Counting repeated queries and attributing time to "a statement" only works when
`SELECT * FROM t WHERE id = 1` and `SELECT * FROM t WHERE id=2` are one statement, and
`IN (1, 2, 3)` and `IN (4)` are one too. The statement is cut into tokens by sqlglot's
tokenizer with PostgreSQL's rules (`::` casts, `E'...'` and `$$...$$` strings, quoted
identifiers, comments), chosen by `bench/sqlnorm.py`: it reads the mix as well as sqlparse's
lexer at 2.5x (5x compiled, `sqlglot[c]`) its speed. The driver parameter styles (`?`, `%s`,
`%(name)s`, `$1`, `:name`) are glued back from its pieces. Then the statement is written back as it was written, token by token: literals and parameters become `?`, an
IN-list becomes `IN (?)`, VALUES rows collapse to one, comments go, and the spacing is
rebuilt from the tokens so that whitespace never splits a statement. Keywords and
identifiers keep their case (`"Order Items"` stays quoted, `SUM(quantity)` stays as typed).

Keyword case alone must not split a statement either (`select` in one code path, `SELECT` in
another is one query to the database): `key` is the grouping key, the normalized text with
keywords in upper case and identifiers as written, and `shown` picks the text a group of
statements is shown as, one of its own normalized texts.

Each distinct statement text is normalized once (an LRU cache on `normalize`): a run repeats
a few statement texts millions of times.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import TokenError
from sqlglot.tokens import TokenType

#: Neutral token kinds the renderer understands (any tokenizer can feed it, see the bench).
WORD, QIDENT, LITERAL, PARAM, PUNCT, SPACE = "word", "qident", "lit", "param", "punct", "space"

Token = tuple[str, str]

#: A word before `(` that is a clause, not a function or table name: keep a space there.
_CLAUSE = frozenset(
    "ALL AND ANY AS BETWEEN BY CASE ELSE EXISTS FROM HAVING IN IS JOIN LATERAL LIKE LIMIT NOT "
    "OFFSET ON OR OVER RETURNING SELECT SET SOME THEN UNION USING VALUES WHEN WHERE WITH".split()
)
#: A word after which a `-`/`+` starts a signed number, not a subtraction.
_EXPR_START = _CLAUSE | {"RETURN", "ELSE", "INTERVAL"}
#: Words that name the table before a column list: `INSERT INTO t (a, b)`.
_TABLE_BEFORE_LIST = frozenset({"INTO", "TABLE"})
#: String prefixes glued to a literal: E'\n', B'101', X'ff', N'text', U&'...'.
_STRING_PREFIX = frozenset({"E", "B", "X", "N", "U&"})
_NO_SPACE_BEFORE = frozenset({",", ")", ";", ".", "::", "]"})
_NO_SPACE_AFTER = frozenset({"(", ".", "::", "["})

_PG = Postgres()  # PostgreSQL's lexical rules are a superset of SQLite's for what drivers send
_LITERALS = frozenset({
    TokenType.STRING, TokenType.NUMBER, TokenType.BYTE_STRING, TokenType.BIT_STRING,
    TokenType.HEX_STRING, TokenType.HEREDOC_STRING, TokenType.NATIONAL_STRING,
    TokenType.RAW_STRING, TokenType.UNICODE_STRING,
})
#: What a truncated statement (instrumentations cut long ones) may lack to tokenize.
_CLOSERS = ("'", '"', "*/", "$$")


def _tokenize(statement: str) -> tuple[str, list[Any]]:
    """(the text the tokens index into, sqlglot's tokens of the statement)."""
    try:
        return statement, _PG.tokenize(statement)
    except TokenError:
        for closer in _CLOSERS:  # an unterminated string, identifier or comment at the end
            text = statement + closer
            try:
                toks = _PG.tokenize(text)
            except TokenError:
                continue
            # a token that only the closer made (`$` + `*/` -> `*`, `/`) was not written
            return text, [t for t in toks if t.start < len(statement)]
        raise


def _sqlglot_tokens(statement: str, upper_keywords: bool = False) -> Iterator[Token]:
    """sqlglot's tokens mapped to the renderer's kinds; `upper_keywords`: keywords (words
    sqlglot does not read as names) in upper case, for the grouping key.

    sqlglot drops comments itself; driver parameters arrive in pieces (`%` `s`, `%` `(` `n`
    `)` `s`, `$` `1`, `:` `n`) and are glued back into one `?`; `?::` is one token to it (a
    JSON operator) and is split into a parameter and a cast.
    """
    statement, toks = _tokenize(statement)
    i, n = 0, len(toks)
    while i < n:
        t = toks[i]
        tt = t.token_type
        text = statement[t.start:t.end + 1]
        nxt = toks[i + 1] if i + 1 < n else None
        glued = nxt is not None and nxt.start == t.end + 1
        if tt == TokenType.PLACEHOLDER:
            yield PARAM, "?"
        elif tt == TokenType.QDCOLON:
            yield PARAM, "?"
            yield PUNCT, "::"
        elif tt in _LITERALS:
            yield LITERAL, text
        elif tt == TokenType.IDENTIFIER:
            yield QIDENT, text
        elif glued and nxt is not None and tt == TokenType.MOD and nxt.text == "s":  # %s
            yield PARAM, "?"
            i += 1
        elif (glued and nxt is not None and tt == TokenType.MOD and nxt.token_type == TokenType.L_PAREN
              and i + 4 < n and toks[i + 3].token_type == TokenType.R_PAREN
              and toks[i + 4].text == "s"):  # %(name)s
            yield PARAM, "?"
            i += 4
        elif glued and nxt is not None and ((tt == TokenType.PARAMETER and nxt.token_type == TokenType.NUMBER)
                        or (tt == TokenType.COLON and nxt.token_type in _NAMES)):  # $1, :name
            yield PARAM, "?"
            i += 1
        elif text[:1].isalpha() or text[:1] == "_":
            word = " ".join(text.split())  # `ORDER  BY` is one token: fold inside too
            # a keyword in a name's place (a column `date`) is folded too: harmless, unquoted
            # names are case-insensitive in SQL
            yield WORD, word.upper() if upper_keywords and tt not in _NAMES else word
        else:  # sqlglot's `$` parameter can swallow the blank after it: fold that too
            yield PUNCT, " ".join(text.split()) or text
        i += 1


_NAMES = frozenset({TokenType.VAR, TokenType.NAME})


def _is_value(tok: Token | None) -> bool:
    """Does `tok` end an operand (so a following `-` is binary)?"""
    if tok is None:
        return False
    kind, text = tok
    if kind in (LITERAL, PARAM, QIDENT):
        return True
    if kind == WORD:
        return text.upper() not in _EXPR_START
    return text in (")", "]")


def _placeholders(tokens: Iterable[Token]) -> list[Token]:
    """Drop spaces, turn literals and parameters into `?` (a sign included)."""
    out: list[Token] = []
    glued = False  # was the previous token directly adjacent (no space)?
    for kind, text in tokens:
        if kind == SPACE:
            glued = False
            continue
        if kind == LITERAL:
            prev = out[-1] if out else None
            if prev and glued and prev[0] == WORD and prev[1].upper() in _STRING_PREFIX:
                out.pop()
                prev = out[-1] if out else None
            if prev and prev[1] in ("-", "+") and prev[0] == PUNCT and not _is_value(
                out[-2] if len(out) > 1 else None
            ):
                out.pop()
            out.append((PARAM, "?"))
        elif kind == PARAM:
            out.append((PARAM, "?"))
        else:
            out.append((kind, text))
        glued = True
    while out and out[-1] == (PUNCT, ";"):
        out.pop()
    return out


def _group(tokens: list[Token], i: int) -> int:
    """Index after the parenthesised group that starts at tokens[i] == '(' (-1 if unclosed)."""
    depth = 0
    for j in range(i, len(tokens)):
        t = tokens[j][1]
        if t == "(":
            depth += 1
        elif t == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    return -1


def _only_placeholders(group: list[Token]) -> bool:
    """`( ?, ?, ? )`: nothing but placeholders and commas inside the parentheses."""
    inner = group[1:-1]
    return bool(inner) and all(t == (PARAM, "?") or t == (PUNCT, ",") for t in inner)


_ONE: list[Token] = [(PUNCT, "("), (PARAM, "?"), (PUNCT, ")")]


def _collapse(tokens: list[Token]) -> list[Token]:
    """`IN (?, ?, ?)` -> `IN (?)`; `VALUES (..), (..)` -> one row (`(?)` when all parameters)."""
    out: list[Token] = []
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        out.append(tok)
        i += 1
        word = tok[1].upper() if tok[0] == WORD else ""
        if word not in ("IN", "VALUES") or i >= n or tokens[i][1] != "(":
            continue
        end = _group(tokens, i)
        if end < 0:
            continue
        if word == "IN":
            out.extend(_ONE if _only_placeholders(tokens[i:end]) else tokens[i:end])
            i = end
            continue
        rows = [tokens[i:end]]
        while end + 1 < n and tokens[end][1] == "," and tokens[end + 1][1] == "(":
            nxt = _group(tokens, end + 1)
            if nxt < 0:
                break
            rows.append(tokens[end + 1:nxt])
            end = nxt
        kept: list[list[Token]] = []
        for row in rows:
            row = _ONE if _only_placeholders(row) else row
            if row not in kept:
                kept.append(row)
        for k, row in enumerate(kept):
            if k:
                out.append((PUNCT, ","))
            out.extend(row)
        i = end
    return out


def _join(tokens: list[Token]) -> str:
    """The tokens with canonical spacing: `f(a, b)`, `x::int`, `t.c`, `a = ?`, `IN (?)`."""
    parts: list[str] = []
    prev: Token | None = None
    before: Token | None = None
    for tok in tokens:
        text = tok[1]
        if prev is not None:
            space = not (text in _NO_SPACE_BEFORE or prev[1] in _NO_SPACE_AFTER)
            if text == "[" and (prev[0] != PUNCT or prev[1] in (")", "]")):
                space = False  # a subscript or array type: `a[1]`, `int[]`
            if space and text == "(" and prev[0] in (WORD, QIDENT):
                space = prev[1].upper() in _CLAUSE or (
                    before is not None and before[1].upper() in _TABLE_BEFORE_LIST)
            if prev[1].endswith(":") and text.startswith(":"):
                space = True  # `:` `::` glued would read back as `::` `:`
            if space:
                parts.append(" ")
        parts.append(text)
        before, prev = prev, tok
    return "".join(parts)


def from_tokens(tokens: Iterable[Token]) -> str:
    """Normalize a statement given as (kind, text) tokens: the tokenizer-neutral core."""
    return _join(_collapse(_placeholders(tokens)))


@lru_cache(maxsize=65536)
def normalize(statement: str) -> str:
    """The statement as written with literals as `?`, lists collapsed and spacing folded."""
    try:
        return from_tokens(_sqlglot_tokens(statement or ""))
    except TokenError:  # not SQL at all: still one key per text, whitespace folded
        return " ".join((statement or "").split())


def key(statement: str) -> str:
    """What groups statements: `normalize` with the keywords in upper case, so `select ...`
    and `SELECT ...` are one statement; names (tables, columns, functions) keep their case.

    Made from the normalized text (normalizing is idempotent), so a run with millions of
    distinct raw texts (literals inline) tokenizes each statement once more, not each text."""
    return _upper_keywords(normalize(statement))


@lru_cache(maxsize=65536)
def _upper_keywords(normalized: str) -> str:
    try:
        return from_tokens(_sqlglot_tokens(normalized, upper_keywords=True))
    except TokenError:  # not SQL (`normalize` folded its whitespace): no keywords known
        return normalized


_SHOWN_LOCK = threading.Lock()
_NUMBER = re.compile(r"\b[0-9]+\b")
#: where a digit may be part of a name, not a number: quoted identifiers, dollar quoting
_NAMES_QUOTED = re.compile(r'["`]|\$[A-Za-z_]*\$')


def _numbers_as_one(statement: str) -> str:
    """The statement with every number written as 0, when that cannot change what it
    normalizes to (numbers become `?` anyway, in strings too; digits inside a name are not
    a number): the thousands of texts a run sends (`WHERE id = 3439`) then reach the
    tokenizer as the few statements they are. Unchanged if it quotes names."""
    if _NAMES_QUOTED.search(statement):
        return statement
    return _NUMBER.sub("0", statement)


def shown(statements: Iterable[str]) -> dict[str, str]:
    """Each statement -> the text its group is shown as: statements with one `key` are one
    group, shown as the least of their normalized texts, as written, whatever order they
    come in (DuckDB's DISTINCT has none)."""
    distinct = set(statements)
    texts: dict[str, str] = {}
    # The check and its detectors (a second thread) name the same statements at the same
    # time: one tokenizes them, the other then finds them in the caches instead of tokenizing
    # them again beside it.
    with _SHOWN_LOCK:
        of = {s: _numbers_as_one(s) for s in distinct}
        for t in set(of.values()):
            k, text = key(t), normalize(t)
            texts[k] = min(texts.get(k, text), text)
        return {s: texts[key(of[s])] for s in distinct}


def short(statement: str, width: int = 80) -> str:
    """A one-line abbreviation for tables and messages: `SELECT ... FROM inventory WHERE ...`."""
    s = normalize(statement)
    return s if len(s) <= width else s[: width - 3] + "..."
