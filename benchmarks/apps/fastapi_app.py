"""The benchmark routes as a FastAPI app: typed path parameters and a dict serialised by FastAPI."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/", response_class=PlainTextResponse)
async def simple() -> str:
    """GET / : a short text body."""
    return "Hello, world!"


@app.get("/json")
async def json_route() -> dict[str, str]:
    """GET /json : a small JSON object, serialised by FastAPI per request (as most apps do)."""
    return {"message": "Hello, world!"}


@app.get("/user/{user_id}/post/{post_id}", response_class=PlainTextResponse)
async def params(user_id: int, post_id: int) -> str:
    """GET /user/{id}/post/{post} : two path parameters, validated as ints by FastAPI."""
    return f"User {user_id}, post {post_id}"


@app.post("/echo", response_class=PlainTextResponse)
async def echo(request: Request) -> str:
    """POST /echo : reads the whole body; an unfinished body keeps the request (and its stream) open."""
    body = await request.body()
    return str(len(body))
