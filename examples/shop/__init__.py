"""A small shop (products, users, orders) built on foundation: ``uvicorn examples.shop.app:app``."""
