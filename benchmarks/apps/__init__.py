"""The apps every server is benchmarked on: the same routes as raw ASGI, Starlette and FastAPI.

Routes: ``GET /`` (text), ``GET /json`` (a small JSON object), ``GET /user/{id}/post/{post}``
(path parameters) and ``POST /echo`` (reads the whole body, answers its length; the memory
mode leaves that body unfinished to hold HTTP/2 streams open).
"""
