"""The OpenAPI document tells the truth about error responses (``foundation.openapi``).

Each test reads the document an app publishes and, where it can, checks it against what the
app really answers: the status is documented, the media type is the documented one, and the
body validates against the documented schema.
"""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

import foundation
from foundation import ApiException, Database, DuplicateRecord, RecordNotFound
from foundation.openapi import error_responses
from tests.foundation.conftest import client_for


class ItemSoldOut(ApiException):
    """The item exists but is sold out."""

    http_code = 409
    external_message = "This item is sold out."
    internal_code = 39711
    internal_message = "Sold out."
    what_to_do = "Pick another item."


class Undocumented(ApiException):
    http_code = 409
    external_message = "Something else went wrong."
    internal_code = 39712


class Item(BaseModel):
    name: str = Field(min_length=1)
    outcome: str = "ok"


class Teapot(BaseModel):
    brewing: bool


def _app(**options: Any) -> FastAPI:
    database = options.pop("database", None)
    app = FastAPI()
    foundation.setup(
        app,
        service="openapi-test",
        env={},
        log_dir=None,
        log_stdout=False,
        metrics=False,
        database=database,
        **options,
    )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/items/{item_id}")
    async def get_item(item_id: int, verbose: bool = False) -> dict[str, int]:
        if item_id == 0:
            raise ZeroDivisionError("no item zero")
        return {"item_id": item_id}

    @app.post(
        "/items",
        status_code=201,
        responses=error_responses(ItemSoldOut, RecordNotFound, DuplicateRecord, Undocumented),
    )
    async def create_item(item: Item) -> Item:
        if item.outcome == "sold-out":
            raise ItemSoldOut(internal_message=f"name={item.name}")
        if item.outcome == "missing":
            raise RecordNotFound()
        return item

    @app.get("/teapot/{pot}", responses={404: {"model": Teapot, "description": "Our own 404."}})
    async def teapot(pot: str) -> dict[str, str]:
        return {"pot": pot}

    return app


def _operation(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"][path][method]
    return operation


def _schema_of(document: dict[str, Any], response: dict[str, Any], media: str) -> dict[str, Any]:
    """The response's schema, with the document's components so that ``$ref`` resolves."""
    return {**response["content"][media]["schema"], "components": document["components"]}


def _assert_documented(
    document: dict[str, Any], path: str, method: str, response: httpx.Response
) -> None:
    """The status, media type and body of a real response are what the document says."""
    responses = _operation(document, path, method)["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method.upper()} {path} answered {status}: undocumented"
    media = response.headers["content-type"].split(";")[0]
    assert media in responses[status]["content"], (status, media)
    jsonschema.validate(response.json(), _schema_of(document, responses[status], media))


def test_a_route_without_declarations_documents_422_and_500_with_the_error_body() -> None:
    document = _app().openapi()
    responses = _operation(document, "/items/{item_id}", "get")["responses"]
    assert list(responses) == ["200", "404", "422", "500"]
    for status in ("422", "500"):
        content = responses[status]["content"]
        assert list(content) == ["application/json"]
        assert content["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
    body = document["components"]["schemas"]["ErrorResponse"]
    assert body["required"] == ["message", "code", "correlation_id"]
    assert set(body["properties"]) == {"message", "code", "correlation_id", "errors"}
    assert body["additionalProperties"] is False
    assert "HTTPValidationError" not in str(document)
    assert "ValidationError" not in document["components"]["schemas"]
    # Nothing can fail validation or miss a route on /health: only the 500 is added.
    assert list(_operation(document, "/health", "get")["responses"]) == ["200", "500"]


async def test_real_error_responses_match_the_document() -> None:
    app = _app()
    document = app.openapi()
    async with client_for(app) as http:
        cases = [
            ("/items/{item_id}", "get", await http.get("/items/abc")),  # 422
            ("/items/{item_id}", "get", await http.get("/items/0")),  # 500
            ("/items/{item_id}", "get", await http.get("/items/1%2F2")),  # 404 from routing
            ("/items", "post", await http.post("/items", json={"name": ""})),  # 422
            (
                "/items",
                "post",
                await http.post("/items", json={"name": "a", "outcome": "sold-out"}),
            ),
            ("/items", "post", await http.post("/items", json={"name": "a", "outcome": "missing"})),
            (
                "/items",
                "post",
                await http.post(
                    "/items",
                    content=b'{"name": "\xff"}',
                    headers={"content-type": "application/json"},
                ),
            ),  # 400: FastAPI cannot read the body
        ]
    assert [response.status_code for _, _, response in cases] == [422, 500, 404, 422, 409, 404, 400]
    for path, method, response in cases:
        _assert_documented(document, path, method, response)


def test_declared_errors_are_grouped_by_status_with_a_named_example_per_code() -> None:
    document = _app().openapi()
    responses = _operation(document, "/items", "post")["responses"]
    assert list(responses) == ["201", "400", "404", "409", "422", "500"]
    conflict = responses["409"]
    examples = conflict["content"]["application/json"]["examples"]
    assert list(examples) == ["ItemSoldOut", "DuplicateRecord", "Undocumented"]
    assert examples["ItemSoldOut"]["summary"] == "39711: This item is sold out."
    assert examples["ItemSoldOut"]["value"] == {
        "message": "This item is sold out.",
        "code": 39711,
        "correlation_id": foundation.openapi.SAMPLE_CORRELATION_ID,
    }
    assert examples["ItemSoldOut"]["description"] == (
        "The item exists but is sold out. What to do: Pick another item."
    )
    assert examples["DuplicateRecord"]["value"]["message"] == (
        "A record with these values already exists."
    )
    # A class without a docstring still shows what it inherits to do, and no borrowed cause.
    assert examples["Undocumented"]["description"].startswith("What to do: Change the request")
    assert conflict["description"].splitlines()[:3] == [
        "Conflict.",
        "",
        '- **39711** `ItemSoldOut` ("This item is sold out."): The item exists but is sold out. '
        "What to do: Pick another item.",
    ]
    # The 404 of a path without parameters is the declared one only: routing cannot give one.
    assert list(responses["404"]["content"]["application/json"]["examples"]) == ["RecordNotFound"]
    # Every example is a body the schema accepts.
    for response in responses.values():
        for media, content in response.get("content", {}).items():
            for example in content.get("examples", {}).values():
                jsonschema.validate(example["value"], _schema_of(document, response, media))


def test_routing_404_joins_the_declared_404_on_a_templated_path() -> None:
    app = FastAPI()
    foundation.setup(app, service="t", env={}, log_dir=None, log_stdout=False, metrics=False)

    @app.get("/things/{thing_id}", responses=error_responses(RecordNotFound))
    async def thing(thing_id: int) -> dict[str, int]:
        raise RecordNotFound()

    examples = _operation(app.openapi(), "/things/{thing_id}", "get")["responses"]["404"]
    assert list(examples["content"]["application/json"]["examples"]) == [
        "RecordNotFound",
        "RouteNotFound",
    ]


async def test_problem_json_documents_application_problem_json() -> None:
    app = _app(problem_json=True)
    document = app.openapi()
    responses = _operation(document, "/items", "post")["responses"]
    for status in ("400", "404", "409", "422", "500"):
        content = responses[status]["content"]
        assert list(content) == ["application/problem+json"], status
        assert content["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/ProblemDetails"
        }
    problem = document["components"]["schemas"]["ProblemDetails"]
    assert problem["required"] == ["type", "title", "status", "detail", "code", "correlation_id"]
    assert "ErrorResponse" not in document["components"]["schemas"]
    example = responses["409"]["content"]["application/problem+json"]["examples"]["ItemSoldOut"]
    assert example["value"]["title"] == "Conflict"
    assert example["value"]["status"] == 409
    async with client_for(app) as http:
        sold_out = await http.post("/items", json={"name": "a", "outcome": "sold-out"})
        invalid = await http.get("/items/abc")
    _assert_documented(document, "/items", "post", sold_out)
    _assert_documented(document, "/items/{item_id}", "get", invalid)
    validate(document)


async def test_hidden_codes_are_not_documented() -> None:
    app = _app(expose_error_codes=False)
    document = app.openapi()
    body = document["components"]["schemas"]["ErrorResponse"]
    assert "code" not in body["properties"]
    example = _operation(document, "/items", "post")["responses"]["409"]["content"][
        "application/json"
    ]["examples"]["ItemSoldOut"]["value"]
    assert "code" not in example
    async with client_for(app) as http:
        response = await http.post("/items", json={"name": "a", "outcome": "sold-out"})
    _assert_documented(document, "/items", "post", response)


def test_503_is_documented_when_a_database_is_attached() -> None:
    without = _app().openapi()
    with_db = _app(database=Database("sqlite+aiosqlite://")).openapi()
    for path, item in without["paths"].items():
        assert "503" not in item["get" if "get" in item else "post"]["responses"], path
    for path, item in with_db["paths"].items():
        responses = item["get" if "get" in item else "post"]["responses"]
        examples = responses["503"]["content"]["application/json"]["examples"]
        assert list(examples) == ["DbBusy", "DbUnavailable"], path
        assert list(responses["500"]["content"]["application/json"]["examples"]) == [
            "AppException",
            "DbException",
        ]


def test_responses_the_application_documented_stay_as_they_are() -> None:
    document = _app().openapi()
    not_found = _operation(document, "/teapot/{pot}", "get")["responses"]["404"]
    assert not_found["description"] == "Our own 404."
    assert not_found["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Teapot"
    }


def test_the_document_is_built_once_and_validates() -> None:
    app = _app()
    document = app.openapi()
    assert app.openapi() is document
    validate(document)
    # An app that resets the cache (after adding routes) gets a rewritten document again.
    app.openapi_schema = None
    rebuilt = app.openapi()
    assert rebuilt is not document
    assert "ErrorResponse" in rebuilt["components"]["schemas"]


def test_add_exception_handlers_alone_documents_the_errors() -> None:
    app = FastAPI()
    foundation.add_exception_handlers(app)

    @app.get("/n/{n}")
    async def n(n: int) -> int:
        return n

    responses = _operation(app.openapi(), "/n/{n}", "get")["responses"]
    assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse"
    )


def test_an_application_schema_named_like_ours_is_kept() -> None:
    class ErrorResponse(BaseModel):
        reason: str

    app = _app()

    @app.get("/legacy", responses={418: {"model": ErrorResponse}})
    async def legacy() -> None:
        return None

    document = app.openapi()
    schemas = document["components"]["schemas"]
    assert set(schemas["ErrorResponse"]["properties"]) == {"reason"}
    assert _operation(document, "/health", "get")["responses"]["500"]["content"][
        "application/json"
    ]["schema"] == {"$ref": "#/components/schemas/FoundationErrorResponse"}
    validate(document)


def test_error_responses_takes_only_foundation_exceptions() -> None:
    with pytest.raises(TypeError, match="AppException subclasses"):
        error_responses(ValueError)  # type: ignore[arg-type]
