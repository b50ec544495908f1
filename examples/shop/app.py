"""A tiny shop: the example service the gate judges in the tests, the README and CI.

Nothing in it knows about tracing or this project: run it under zero-code instrumentation,

    OTEL_SERVICE_NAME=shop opentelemetry-instrument python examples/shop/app.py --port 8000

and its Flask and sqlite3 spans go wherever OTEL_EXPORTER_OTLP_ENDPOINT says. Two releases:

- release 1: the product list reads products and their category names with one JOIN;
- release 2: the regression a refactoring brings in: one query per product for its category
  (an N+1: 20 more queries per page, each a round trip).

`--release` (or SHOP_RELEASE) picks one, as two builds of the same repository would.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
from pathlib import Path

from flask import Flask, abort, jsonify

PRODUCTS = 2_000
CATEGORIES = 40
PAGE = 20


def seed(path: Path) -> None:
    """A small catalogue, created once per file (deterministic)."""
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        cur = con.cursor()
        cur.execute("BEGIN IMMEDIATE")  # two sides may start at once on the same file
        cur.execute("CREATE TABLE IF NOT EXISTS categories (id INTEGER PRIMARY KEY, name TEXT)")
        cur.execute("CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, name TEXT, "
                    "price_cents INTEGER, category_id INTEGER REFERENCES categories(id))")
        cur.execute("SELECT count(*) FROM products")
        if cur.fetchone()[0] == 0:
            cur.executemany("INSERT INTO categories VALUES (?, ?)",
                            [(i, f"category {i}") for i in range(1, CATEGORIES + 1)])
            cur.executemany("INSERT INTO products VALUES (?, ?, ?, ?)",
                            [(i, f"product {i}", 100 + (i * 37) % 9_900, 1 + i % CATEGORIES)
                             for i in range(1, PRODUCTS + 1)])
        cur.execute("COMMIT")
    finally:
        con.close()


def create_app(release: int = 1, db_path: str | os.PathLike | None = None) -> Flask:
    """The shop's WSGI app; `release` 2 carries the N+1 regression."""
    path = Path(db_path or Path(tempfile.gettempdir()) / "slo-example-shop.db")
    seed(path)
    app = Flask("shop")

    def cursor() -> sqlite3.Cursor:
        # cursor.execute: what the sqlite3 instrumentation traces (not connection.execute)
        return sqlite3.connect(path, check_same_thread=False).cursor()

    @app.get("/")
    def index():
        return jsonify(service="shop", release=release)

    @app.get("/products")
    def products():
        cur = cursor()
        if release >= 2:
            cur.execute("SELECT id, name, price_cents, category_id FROM products "
                        "ORDER BY id LIMIT ?", (PAGE,))
            rows = cur.fetchall()
            items = []
            for pid, name, price, cat in rows:
                cur.execute("SELECT name FROM categories WHERE id = ?", (cat,))
                items.append({"id": pid, "name": name, "price_cents": price,
                              "category": cur.fetchone()[0]})
        else:
            cur.execute("SELECT p.id, p.name, p.price_cents, c.name FROM products p "
                        "JOIN categories c ON c.id = p.category_id ORDER BY p.id LIMIT ?", (PAGE,))
            items = [{"id": pid, "name": name, "price_cents": price, "category": cat}
                     for pid, name, price, cat in cur.fetchall()]
        cur.connection.close()
        return jsonify(items)

    @app.get("/products/<int:product_id>")
    def product(product_id: int):
        cur = cursor()
        cur.execute("SELECT p.id, p.name, p.price_cents, c.name FROM products p "
                    "JOIN categories c ON c.id = p.category_id WHERE p.id = ?", (product_id,))
        row = cur.fetchone()
        cur.connection.close()
        if row is None:
            abort(404)
        return jsonify(dict(zip(("id", "name", "price_cents", "category"), row, strict=True)))

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    ap.add_argument("--release", type=int, default=int(os.environ.get("SHOP_RELEASE", "1")))
    ap.add_argument("--db", default=os.environ.get("SHOP_DB"))
    args = ap.parse_args()
    # the development server: one process, threads; enough for an example
    create_app(args.release, args.db).run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
