"""product-service: GET /products (a page with categories), GET /products/batch?ids=,
GET /products/<id>.

Bug `n_plus_one`: the page loads each product's category with its own query (the lazy-loading
ORM mistake) instead of one join."""

from __future__ import annotations

from flask import Flask, jsonify

from sut.db import placeholders
from sut.web import ApiError, Service, int_arg, int_list

DEFAULT_PAGE_SIZE = 20


def register(app: Flask, svc: Service) -> None:
    @app.get("/products")
    def list_products():  # type: ignore[no-untyped-def]
        page = int_arg("page", 1, 1, 100_000)
        size = int_arg("size", DEFAULT_PAGE_SIZE, 1, 100)
        offset = (page - 1) * size
        with svc.tracer.start_as_current_span("load products with categories") as span:
            span.set_attribute("products.page", page)
            span.set_attribute("products.page_size", size)
            if svc.bugs.enabled("n_plus_one"):
                span.set_attribute("products.category_loading", "per_product")
                rows = svc.db.query(
                    "SELECT id, name, price_cents, category_id FROM products ORDER BY id LIMIT ? OFFSET ?",
                    (size, offset))
                products = []
                for pid, name, price, cat_id in rows:
                    cat = svc.db.query("SELECT id, name FROM categories WHERE id = ?", (cat_id,))
                    products.append((pid, name, price, cat_id, cat[0][1] if cat else None))
            else:
                span.set_attribute("products.category_loading", "join")
                products = svc.db.query(
                    "SELECT p.id, p.name, p.price_cents, c.id, c.name FROM products p "
                    "JOIN categories c ON c.id = p.category_id ORDER BY p.id LIMIT ? OFFSET ?",
                    (size, offset))
            span.set_attribute("products.count", len(products))
        return jsonify(page=page, size=size, products=[
            {"id": pid, "name": name, "price_cents": price,
             "category": {"id": cat_id, "name": cat_name}}
            for pid, name, price, cat_id, cat_name in products])

    @app.get("/products/batch")
    def batch():  # type: ignore[no-untyped-def]
        ids = int_list("ids")
        rows = svc.db.query(
            "SELECT id, name, price_cents, category_id FROM products "
            f"WHERE id IN ({placeholders(len(ids))})", ids)
        found = {r[0]: r for r in rows}
        return jsonify(products=[
            {"id": pid, "name": r[1], "price_cents": r[2], "category_id": r[3]}
            for pid in ids if (r := found.get(pid))], missing=[p for p in ids if p not in found])

    @app.get("/products/<int:product_id>")
    def one(product_id: int):  # type: ignore[no-untyped-def]
        rows = svc.db.query("SELECT id, name, price_cents, category_id FROM products WHERE id = ?",
                            (product_id,))
        if not rows:
            raise ApiError(404, f"product {product_id} not found")
        pid, name, price, cat_id = rows[0]
        return jsonify(id=pid, name=name, price_cents=price, category_id=cat_id)
