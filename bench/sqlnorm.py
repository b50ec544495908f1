"""Benchmark: SQL normalization by tokenizer (sqlglot, sqlparse) against the former regexes.

`slo/judge/sqlnorm.py` turns every distinct statement text of a run into its grouping key. This
script normalizes a realistic mix and prints, per candidate, statements/s (uncached: every text
distinct) as a ratio against the regex implementation measured in the same rounds, and how
many groups the mix falls into (the mix is built from a known number of templates, so the
right answer is printed next to it). Both tokenizers feed the same renderer
(`slo.judge.sqlnorm.from_tokens`), so the rate compares the tokenizers, and the group count the
ability to read the statements.

The mix: every SELECT/INSERT/UPDATE/DELETE literal in `sut/services/*.py` and `sut/db.py`
(read from the source with `ast`), as SQLite records it (`?`), as psycopg records it (`%s`)
and with the literals inlined, with IN-lists of 1-40 items; plus PostgreSQL-style statements
with `::` casts, quoted identifiers, E-strings, VALUES rows (1-10), comments and random
whitespace.

    .venv/bin/python bench/sqlnorm.py [--statements 4000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import random
import re
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from slo.judge import sqlnorm

ROOT = Path(__file__).resolve().parents[1]
_DML = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.I)


# --- the former implementation (the reference) -------------------------------------------
_STRING = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(r"(?<![\w.$])[-+]?(?:0x[0-9a-f]+|\d+(?:\.\d+)?(?:e[-+]?\d+)?)\b", re.I)
_PARAM = re.compile(r"(?:%\(\w+\)s|%s|\$\d+|:\w+|\?)")
_WS = re.compile(r"\s+")
_IN_LIST = re.compile(r"\bIN\s*\(\s*\?(?:\s*,\s*\?)*\s*\)", re.I)
_VALUES = re.compile(r"\bVALUES\s*\(\s*\?(?:\s*,\s*\?)*\s*\)(?:\s*,\s*\(\s*\?(?:\s*,\s*\?)*\s*\))*", re.I)
_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*", re.S)
_PUNCT = re.compile(r"\s*(<=|>=|<>|!=|=|<|>|,|\(|\))\s*")


def regex_normalize(statement: str) -> str:
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


# --- sqlparse's lexer feeding the same renderer (pip install sqlparse to compare) ---------
def _sqlparse_tokens(statement: str) -> Iterable[sqlnorm.Token]:
    from sqlparse import tokens as T
    from sqlparse.lexer import Lexer

    for ttype, text in Lexer.get_default_instance().get_tokens(statement):
        if ttype in T.Whitespace or ttype in T.Comment:
            yield sqlnorm.SPACE, " "
        elif ttype is T.Name.Placeholder:
            yield sqlnorm.PARAM, text
        elif ttype is T.String.Symbol:
            yield sqlnorm.QIDENT, text
        elif ttype in T.Number:
            if text[0] in "+-":  # the lexer glues a sign to `x-1`; the renderer decides
                yield sqlnorm.PUNCT, text[0]
                text = text[1:]
            yield sqlnorm.LITERAL, text
        elif ttype in T.Literal:
            yield sqlnorm.LITERAL, text
        elif ttype in T.Punctuation or ttype in T.Operator:
            yield sqlnorm.PUNCT, text
        else:
            yield sqlnorm.WORD, " ".join(text.split())


def sqlparse_normalize(statement: str) -> str:
    return sqlnorm.from_tokens(_sqlparse_tokens(statement))


sqlglot_normalize = sqlnorm.normalize.__wrapped__  # the library's function without its cache
_CORE = importlib.util.find_spec("sqlglot.tokenizer_core")
_COMPILED = bool(_CORE and _CORE.origin and not _CORE.origin.endswith(".py"))  # sqlglot[c]

CANDIDATES: dict[str, Callable[[str], str]] = {
    "regex (former, reference)": regex_normalize,
    "sqlglot tokenizer (slo)": sqlglot_normalize,
}
if importlib.util.find_spec("sqlparse"):
    CANDIDATES["sqlparse lexer"] = sqlparse_normalize
else:
    print("sqlparse is not installed: `pip install sqlparse` to compare it")


# --- the mix -----------------------------------------------------------------------------
def sut_templates() -> list[str]:
    """Every DML string literal of the SUT (f-string holes become `{}`, an IN-list)."""
    out: list[str] = []
    for path in sorted((ROOT / "sut" / "services").glob("*.py")) + [ROOT / "sut" / "db.py"]:
        tree = ast.parse(path.read_text())
        skip = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings
        skip |= {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            elif isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            else:
                continue
            if _DML.match(text) and text not in out:
                out.append(text)
    return out


PG_TEMPLATES = [
    'SELECT o."Id", o.created_at::date, o.total_cents::numeric / 100 FROM "Orders" o '
    "WHERE o.user_id = ? AND o.status = ?::order_status",
    "/* service=order-service */ INSERT INTO order_items (order_id, product_id, quantity) VALUES {rows}",
    "UPDATE inventory SET quantity = quantity - ? WHERE product_id = ? AND warehouse = E?{tail}",
    'SELECT "p"."Name", c.name FROM products AS "p" JOIN categories c ON c.id = "p".category_id '
    "WHERE \"p\".id IN ({}) AND c.name <> ? ORDER BY \"p\".\"Name\" LIMIT ?",
    "SELECT count(*) FILTER (WHERE q.qty > ?) FROM (SELECT product_id, sum(quantity) AS qty "
    "FROM inventory GROUP BY product_id) q WHERE q.product_id = ANY(?::int[])",
]


def _literal(rng: random.Random, style: str) -> str:
    if style == "sqlite":
        return "?"
    if style == "psycopg":
        return "%s"
    return str(rng.randint(-5, 10**6)) if rng.random() < 0.6 else "'" + rng.choice(
        ["ada", "o''brien", "x -- y", "a/*b*/", "Ünïcode"]) + "'"


def _fill(template: str, rng: random.Random, style: str) -> str:
    k = rng.randint(1, 40)
    s = template.replace("{}", ", ".join("?" * k))
    if "{rows}" in s:
        s = s.replace("{rows}", ", ".join("(?, ?, ?)" for _ in range(rng.randint(1, 10))))
    s = re.sub(r"E\?", lambda _: "E'" + rng.choice(["a\\'b", "main", "w2"]) + "'", s)
    s = re.sub(r"\?", lambda _: _literal(rng, style), s)
    if rng.random() < 0.5:  # whitespace as different code paths or ORMs write it
        s = re.sub(r" ", lambda _: rng.choice([" ", "  ", "\n    ", " "]), s)
        s = re.sub(r" = ", lambda _: rng.choice(["=", " = ", " =  "]), s)
    return s.replace("{tail}", rng.choice([" -- reserve", "", " /* retry */"]))


def mix(n: int, seed: int = 1) -> tuple[list[str], int]:
    """n distinct statement texts and the number of templates they come from."""
    rng = random.Random(seed)
    templates = sut_templates() + PG_TEMPLATES
    seen: dict[str, None] = {}
    while len(seen) < n:
        t = rng.choice(templates)
        style = rng.choice(["sqlite", "psycopg", "literal"])
        seen.setdefault(_fill(t, rng, style), None)
    return list(seen), len(templates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--statements", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    stmts, n_templates = mix(args.statements)
    print(f"{len(stmts)} distinct statements from {n_templates} templates "
          f"({len(sut_templates())} from the SUT's source); sqlglot's tokenizer compiled (sqlglot[c]): "
          f"{'yes' if _COMPILED else 'no'}")
    rates: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    ratios: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    for _ in range(args.rounds):  # interleaved, so a busy moment hits every candidate
        ref = 0.0
        for name, fn in CANDIDATES.items():
            t0 = time.perf_counter()
            for s in stmts:
                fn(s)
            rate = len(stmts) / (time.perf_counter() - t0)
            ref = ref or rate
            rates[name].append(rate)
            ratios[name].append(rate / ref)
    print(f"{'candidate':28} {'statements/s':>12} {'x regex':>8} {'range':>13} {'groups':>7}")
    for name, fn in CANDIDATES.items():
        groups = len({fn(s) for s in stmts})
        r = ratios[name]
        print(f"{name:28} {statistics.median(rates[name]):12,.0f} {statistics.median(r):8.2f} "
              f"{min(r):6.2f}-{max(r):<6.2f} {groups:7d}")
    print(f"(right number of groups: {n_templates}; slo.judge.sqlnorm.normalize caches each distinct "
          f"text, so a run pays this once per distinct statement text)")
    sample = stmts[:3]
    for name, fn in CANDIDATES.items():
        print(f"\n{name}:")
        for s in sample:
            print("  ", fn(s)[:150])


if __name__ == "__main__":
    main()
