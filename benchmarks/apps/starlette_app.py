"""The benchmark routes as a Starlette app: what a server costs under a typical framework."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


async def simple(request: Request) -> Response:
    """GET / : a short text body."""
    return PlainTextResponse("Hello, world!")


async def json_route(request: Request) -> Response:
    """GET /json : a small JSON object, serialised per request."""
    return JSONResponse({"message": "Hello, world!"})


async def params(request: Request) -> Response:
    """GET /user/{id}/post/{post} : the router extracts two path parameters."""
    return PlainTextResponse(f"User {request.path_params['id']}, post {request.path_params['post']}")


async def echo(request: Request) -> Response:
    """POST /echo : reads the whole body; an unfinished body keeps the request (and its stream) open."""
    body = await request.body()
    return PlainTextResponse(str(len(body)))


app = Starlette(
    routes=[
        Route("/", simple),
        Route("/json", json_route),
        Route("/user/{id}/post/{post}", params),
        Route("/echo", echo, methods=["POST"]),
    ]
)
