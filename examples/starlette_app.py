"""A Starlette app with lifespan state, path parameters and JSON: `celeris examples.starlette_app:app`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    # What startup yields becomes request.state in every request (the ASGI lifespan "state").
    yield {"greeting": "Hello"}


async def homepage(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{request.state.greeting} from Starlette\n")


async def user(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.path_params["name"], "query": dict(request.query_params)})


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"received": await request.json()})


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/users/{name}", user),
        Route("/echo", echo, methods=["POST"]),
    ],
    lifespan=lifespan,
)
