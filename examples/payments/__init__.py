"""A stand-in card processor the shop calls over HTTP: ``uvicorn examples.payments.app:app``."""
