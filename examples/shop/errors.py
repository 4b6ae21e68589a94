"""The shop's domain errors: each has its own ``internal_code`` (301xx is the shop's range).

foundation turns a raised one into ``{"message": external_message, "code": internal_code,
"correlation_id": ...}`` with ``http_code``, logs it at ERROR with ``internal_message`` and the
keyword context, and counts it in ``app_exceptions_total``. Database errors (duplicate email,
unknown user, unknown product) need no class here: foundation's ``DbManager`` raises
``DuplicateRecord``, ``ReferenceViolation`` and ``RecordNotFound`` itself.

The docstring's first paragraph is the cause and ``what_to_do`` the advice that the error
catalogue (``python -m foundation.catalogue --import examples.shop.errors``) and the OpenAPI
document show; routes declare what they raise with ``foundation.error_responses(...)``.
"""

from __future__ import annotations

from foundation import ApiException


class OutOfStock(ApiException):
    """The product exists but fewer items are left than the order asks for."""

    http_code = 409
    external_message = "This product is out of stock."
    internal_code = 30101
    internal_message = "Stock check failed."
    what_to_do = "Order fewer items (GET /products/{sku} shows the stock), or another product."


class PaymentDeclined(ApiException):
    """The payment service refused the card."""

    http_code = 402
    external_message = "The payment was declined."
    internal_code = 30102
    internal_message = "Card declined by the payment service."
    what_to_do = "The order failed and its stock was given back: place it again with another card."


class PaymentUnavailable(ApiException):
    """The payment service could not be reached or answered with an error."""

    http_code = 503
    external_message = "Payments are temporarily unavailable, please retry."
    internal_code = 30103
    internal_message = "Payment service unavailable."
    what_to_do = "The order failed and its stock was given back: place it again after a short wait."


class ReceiptUndeliverable(ApiException):
    """The mail server refused the receipt of a paid order (raised in the worker, not a request)."""

    http_code = 502
    external_message = "The receipt could not be e-mailed."
    internal_code = 30301
    internal_message = "Mail server refused the receipt."
    what_to_do = (
        "Check the customer's e-mail address, then send it again: POST /orders/{id}/receipt/email."
    )
