"""user-service: GET /users/<id>, POST /users. Bug `error_burst`: ~20% of requests fail."""

from __future__ import annotations

import random

from flask import Flask, jsonify, request

from sut.web import ApiError, Service

ERROR_RATE = 0.2


class ConnectionReset(Exception):
    """The simulated fault of `error_burst`: a flaky connection pool under load."""


def register(app: Flask, svc: Service) -> None:
    rng = random.Random()

    @app.before_request
    def error_burst():  # type: ignore[no-untyped-def]
        if request.path.startswith("/users") and svc.bugs.enabled("error_burst") \
                and rng.random() < ERROR_RATE:
            raise ConnectionReset("user store connection reset by peer (error_burst)")

    @app.get("/users/<int:user_id>")
    def get_user(user_id: int):  # type: ignore[no-untyped-def]
        rows = svc.db.query("SELECT id, name, email FROM users WHERE id = ?", (user_id,))
        if not rows:
            raise ApiError(404, f"user {user_id} not found")
        uid, name, email = rows[0]
        return jsonify(id=uid, name=name, email=email)

    @app.post("/users")
    def create_user():  # type: ignore[no-untyped-def]
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, 'body must be a JSON object like {"name": "Ada", "email": "ada@example.com"}')
        name, email = body.get("name"), body.get("email")
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
            raise ApiError(400, "field 'name' must be a non-empty string of at most 100 characters")
        if not isinstance(email, str) or "@" not in email or len(email) > 200 or " " in email:
            raise ApiError(400, "field 'email' must be an e-mail address like ada@example.com")
        new_id = svc.db.insert("INSERT INTO users (name, email) VALUES (?, ?)", (name.strip(), email))
        return jsonify(id=new_id, name=name.strip(), email=email), 201
