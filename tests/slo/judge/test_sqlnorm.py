from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from slo.ingest.spans import make_row, table_from_rows
from slo.judge.sqlnorm import key, normalize, short, shown
from slo.judge.tree import RunIndex


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("select * from t where id=1", "select *  from t where id = 2"),
        ("SELECT a FROM t WHERE x IN (1, 2, 3)", "SELECT a FROM t WHERE x IN (4)"),
        ("SELECT a FROM t WHERE x IN (?,?)", "SELECT a FROM t WHERE x IN ($1, $2, $3)"),
        ("select a from t where n = 'o''k'", "select a from t where n='x' -- comment"),
        ("insert into t(a,b) values (1,2),(3,4)", "insert into t (a, b) values (%s, %s)"),
        ("select a from t where v>=-3.5e4", "select a from t where v >= %(v)s;"),
        ("SELECT a FROM t WHERE b = :name", "SELECT a FROM t WHERE b = E'x\\'y'"),
        ("SELECT a FROM t WHERE x-1 > 0", "SELECT a FROM t WHERE x - 2 > 0"),
        ("SELECT a FROM t ORDER  BY a", "SELECT a FROM t\n  ORDER BY a"),
    ],
)
def test_same_statement_normalizes_equal(a: str, b: str) -> None:
    assert normalize(a) == normalize(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("select a from t where id = 1", "select b from t where id = 1"),
        ("select a from t1 where id = 1", "select a from t2 where id = 1"),
        ("select a from t where x < 1", "select a from t where x > 1"),
        ('SELECT "col 1" FROM t', 'SELECT "col 2" FROM t'),  # quoted names are not literals
        ("SELECT a::int FROM t", "SELECT a::text FROM t"),
    ],
)
def test_different_statements_stay_apart(a: str, b: str) -> None:
    assert normalize(a) != normalize(b)


def test_statement_keeps_its_case_with_literals_as_placeholders() -> None:
    assert normalize("SELECT q FROM inventory WHERE product_id IN (1,2) AND w = 'x'") == (
        "SELECT q FROM inventory WHERE product_id IN (?) AND w = ?"
    )
    assert normalize("SELECT product_id, SUM(quantity) FROM inventory WHERE product_id IN "
                     "(?, ?, ?) GROUP BY product_id") == (
        "SELECT product_id, SUM(quantity) FROM inventory WHERE product_id IN (?) GROUP BY product_id")


def test_quoted_identifiers_and_casts_come_out_as_written() -> None:
    got = normalize('select o."Id", o.created_at :: date, \'5\'::int, %s::int[] '
                    'from "Order Items" o where o."user 1" = $1 -- c')
    assert got == 'select o."Id", o.created_at::date, ?::int, ?::int[] from "Order Items" o where o."user 1" = ?'


def test_values_rows_collapse() -> None:
    assert normalize("INSERT INTO users (name, email) VALUES ('a', 'b'), ('c', 'd')") == (
        "INSERT INTO users (name, email) VALUES (?)")
    assert normalize("INSERT INTO t VALUES (1, now()), (2, now())") == "INSERT INTO t VALUES (?, now())"


def test_truncated_statement_still_normalizes() -> None:
    """Instrumentations cut long statements, often inside a string literal."""
    assert normalize("SELECT a FROM t WHERE n = 'abc") == "SELECT a FROM t WHERE n = ?"
    assert normalize("SELECT a /* cut") == "SELECT a"


def test_short_abbreviates() -> None:
    s = short("select " + ", ".join(f"c{i}" for i in range(50)) + " from t", width=40)
    assert len(s) == 40 and s.endswith("...")


# --- properties: the grouping key is stable across literal values, list lengths, whitespace --
_literal = st.one_of(
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9).map(repr),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            max_size=20).map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.sampled_from(["?", "%s", "%(name)s", "$3", ":v"]),
)
_space = st.sampled_from([" ", "  ", "\n", "\t ", " \n  "])
_TEMPLATE = ("SELECT p.id, p.\"Name\", SUM(i.quantity)::int FROM products p JOIN inventory i "
             "ON i.product_id = p.id WHERE p.id IN ({in_list}) AND p.name <> {a} "
             "AND p.price_cents >= {b} GROUP BY p.id ORDER BY p.id LIMIT {c}")


def _statement(lits: list[str], in_list: list[str], spaces: list[str]) -> str:
    s = _TEMPLATE.format(in_list=", ".join(in_list), a=lits[0], b=lits[1], c=lits[2])
    words = s.split(" ")
    return "".join(w + spaces[i % len(spaces)] for i, w in enumerate(words)).strip()


@given(
    st.lists(_literal, min_size=3, max_size=3), st.lists(_literal, min_size=3, max_size=3),
    st.lists(_literal, min_size=1, max_size=60), st.lists(_literal, min_size=1, max_size=60),
    st.lists(_space, min_size=1, max_size=5),
)
def test_key_is_stable_across_literals_list_lengths_and_whitespace(
    lits1: list[str], lits2: list[str], in1: list[str], in2: list[str], spaces: list[str],
) -> None:
    a = normalize(_statement(lits1, in1, [" "]))
    assert a == normalize(_statement(lits2, in2, spaces))
    assert a == ('SELECT p.id, p."Name", SUM(i.quantity)::int FROM products p JOIN inventory i '
                 'ON i.product_id = p.id WHERE p.id IN (?) AND p.name <> ? AND p.price_cents >= ? '
                 'GROUP BY p.id ORDER BY p.id LIMIT ?')


@given(st.lists(st.lists(_literal, min_size=3, max_size=3), min_size=1, max_size=30))
def test_values_rows_are_one_key(rows: list[list[str]]) -> None:
    stmt = "INSERT INTO order_items (order_id, product_id, quantity) VALUES " + ", ".join(
        "(" + ", ".join(r) + ")" for r in rows)
    assert normalize(stmt) == "INSERT INTO order_items (order_id, product_id, quantity) VALUES (?)"


_SQLISH = st.lists(st.sampled_from(
    list("'\"`$:;?%()[],.-+*/=<>!|&#@\\ \n\tEeXxNn0123456789ab_")
    + ["--", "/*", "*/", "$$", "::", "%s", "%(a)s", "E'", "IN (", "VALUES (", "SELECT", "FROM"]),
    max_size=60).map("".join)


@example("$")  # a truncated-statement repair once added tokens nobody wrote
@example("$ A$--")  # sqlglot's `$` parameter token once kept the blank after it
@example("SELECT 'abc")
@example(": ::?")  # `:` then `::` glued read back as `::` then `:`
@given(st.one_of(st.text(max_size=200), _SQLISH))
def test_any_text_normalizes_idempotently(text: str) -> None:
    """Reports abbreviate keys that are already normalized: normalizing twice changes nothing."""
    once = normalize(text)
    assert normalize(once) == once


# --- keyword case: one group, shown as written ------------------------------------------
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("select * from Orders o where id = 1 order  by id", "SELECT * FROM Orders o WHERE id = 2 ORDER BY id"),
        ("Select a From t Where x In (1, 2)", "SELECT a FROM t WHERE x IN ($1)"),
        ('insert into "Order Items" (a) values (1)', 'INSERT INTO "Order Items" (a) VALUES (%s)'),
    ],
)
def test_keyword_case_alone_does_not_split_a_statement(a: str, b: str) -> None:
    assert key(a) == key(b)
    assert normalize(a) != normalize(b)  # each is still shown as written


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SELECT a FROM Orders", "SELECT a FROM orders"),
        ('SELECT "Id" FROM t', 'SELECT "id" FROM t'),
        ("SELECT SUM(quantity) FROM t", "SELECT sum(quantity) FROM t"),  # a function is a name
    ],
)
def test_names_keep_their_case_in_the_key(a: str, b: str) -> None:
    assert key(a) != key(b)


def test_a_group_is_shown_as_one_of_its_texts_whatever_the_order() -> None:
    lower, upper = "select a from T where id = 1", "SELECT a FROM T WHERE id = 2"
    want = "SELECT a FROM T WHERE id = ?"
    assert shown([lower, upper]) == shown([upper, lower]) == {lower: want, upper: want}
    assert shown([lower]) == {lower: "select a from T where id = ?"}


_KEYWORDS = ("SELECT", "FROM", "JOIN", "ON", "WHERE", "IN", "AND", "GROUP BY", "ORDER BY",
             "LIMIT")
_KW_TEMPLATE = ("{} p.id, SUM(i.quantity) {} products p {} inventory i {} i.product_id = p.id "
                "{} p.id {} (1, 2) {} p.name <> 'x' {} p.id {} p.id {} 3")


@given(st.lists(st.sampled_from([str.upper, str.lower, str.title]),
                min_size=len(_KEYWORDS), max_size=len(_KEYWORDS)))
def test_any_keyword_spelling_is_one_key(spell: list) -> None:
    stmt = _KW_TEMPLATE.format(*(f(kw) for f, kw in zip(spell, _KEYWORDS, strict=True)))
    assert key(stmt) == ("SELECT p.id, SUM(i.quantity) FROM products p JOIN inventory i ON "
                         "i.product_id = p.id WHERE p.id IN (?) AND p.name <> ? GROUP BY p.id "
                         "ORDER BY p.id LIMIT ?")


def test_the_run_index_counts_both_spellings_as_one_statement() -> None:
    """Per-request counts (and the statement the report names) come from `RunIndex.statements`."""
    spellings = ["SELECT name FROM categories WHERE id = 1", "select name from categories where id = 2"]
    rows = [make_row(trace_id="a" * 32, span_id=f"{i + 1:016x}", name="SELECT", start_ns=i,
                     end_ns=i + 1, kind="client", service="s",
                     attributes={"db.system": "sqlite", "db.statement": spellings[i % 2]})
            for i in range(4)]
    codes, names = RunIndex(table_from_rows(rows)).statements
    assert names == ["SELECT name FROM categories WHERE id = ?"]
    assert list(codes) == [0, 0, 0, 0]


#: numbers in every place a statement can hold one, digits inside names beside them
_NUMBERED = [
    "SELECT id FROM orders WHERE id = 3439", "select id from orders where id=12",
    "SELECT a1, t2.b FROM t2 WHERE x IN (1, 22, 333) LIMIT 20 OFFSET 40",
    "SELECT * FROM t WHERE v > 1.5 AND w < .25 AND z = 1e-5 AND h = 0x1F",
    "INSERT INTO users (name, email) VALUES ('u170915', 'u170915@example.com')",
    'SELECT "Order 1" FROM "Table 2" WHERE id = 7', 'SELECT "Order 2" FROM "Table 2" WHERE id = 7',
    "SELECT `col 1` FROM t WHERE id = 3", "SELECT `col 2` FROM t WHERE id = 3",
    "SELECT $tag$ 1 $tag$, id FROM t WHERE id = $1", "SELECT $tag$ 2 $tag$, id FROM t",
    "SELECT CAST(x AS varchar(255)), y::int4 FROM t9 WHERE k = :p1 AND j = %(n2)s",
    "SELECT id FROM t -- 42 rows\nWHERE id = 5", "UPDATE t SET n = n + 1 WHERE id = -12",
]


@given(st.permutations(_NUMBERED))
def test_shown_names_numbered_statements_as_tokenizing_each_would(stmts: list[str]) -> None:
    """`shown` writes numbers as 0 before it tokenizes (thousands of texts become the few
    statements they are): the names must be what tokenizing every text gives."""
    texts: dict[str, str] = {}
    for s in stmts:
        texts[key(s)] = min(texts.get(key(s), normalize(s)), normalize(s))
    assert shown(stmts) == {s: texts[key(s)] for s in stmts}
