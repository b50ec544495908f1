"""The system under test: five Flask services, their seeded data, and their switchable bugs.

`sut up` (sut.runner) starts all five under gunicorn; each service is built by
`sut.app.create_app(name)` so the same code runs in gunicorn workers and in tests.
"""

from __future__ import annotations

#: service name -> offset from the base port (order = base, user = base+1, ...)
SERVICES: dict[str, int] = {
    "order-service": 0,
    "user-service": 1,
    "product-service": 2,
    "inventory-service": 3,
    "promotion-service": 4,
}
