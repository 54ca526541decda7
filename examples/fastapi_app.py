"""A FastAPI app with a typed body and a path parameter: `celeris examples.fastapi_app:app`."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

app = FastAPI(title="celeris example")

ITEMS: dict[int, str] = {1: "first"}


class Item(BaseModel):
    name: str
    price: float


@app.get("/")
async def root() -> dict[str, str]:
    return {"message": "Hello from FastAPI"}


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, int | str]:
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="Item not found")
    return {"id": item_id, "name": ITEMS[item_id]}


@app.post("/items")
async def create_item(item: Item) -> dict[str, float | str]:
    return {"name": item.name, "price_with_tax": round(item.price * 1.2, 2)}
