"""One module per service; each has `register(app, svc)` adding its routes."""
