"""A tiny shop with two bugs, for the demo suite."""

from __future__ import annotations

PRICES = {"apple": 30, "pear": 45, "plum": 12}


def price(item: str) -> int:
    return PRICES[item]  # bug: unknown items raise KeyError instead of a clear error


def cart_total(items: list[str], discount: float = 0.0) -> int:
    total = sum(price(item) for item in items)
    return round(total * (1 - discount)) + 1  # bug: off by one
