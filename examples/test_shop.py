"""Demo suite: passing, failing, erroring, xfail, parametrized and Sauce-tagged tests."""

from __future__ import annotations

import logging

import pytest
from shop import cart_total, price

log = logging.getLogger("shop")


def test_price_of_apple():
    assert price("apple") == 30


def test_empty_cart_is_free():
    assert cart_total([]) == 0  # fails: the off-by-one bug


@pytest.mark.parametrize("items", [["apple"], ["pear"], ["apple", "plum"]])
def test_cart_total(items):
    """Totals are the sum of prices (fails on every parameter the same way: one issue)."""
    log.info("computing total for %s", items)
    assert cart_total(items) == sum(price(i) for i in items)


def test_discounted_total():
    """The off-by-one of cart_total again, but its assertion fails in this test: grouping sees
    no shared raise site, so it is an issue of its own (as an assertion in a test is)."""
    assert cart_total(["pear", "pear"], discount=0.5) == 45


def test_unknown_item(rp_bts):
    rp_bts.attach(b'{"cart": ["kiwi"]}', name="cart.json", mime="application/json")
    assert price("kiwi") > 0  # KeyError raised in shop.price: one issue with the test below


def test_cart_with_unknown_item():
    """Hits the same broken function as test_unknown_item: the KeyError is raised in shop.price,
    not in a test, so both share one issue (grouped by cause)."""
    assert cart_total(["apple", "kiwi"]) > 30


@pytest.fixture
def payment_gateway():
    raise ConnectionError("payment gateway at 10.0.0.7:8443 refused the connection")


def test_checkout(payment_gateway):
    assert payment_gateway  # errors in the fixture: filed as an error


@pytest.mark.xfail(reason="plums are not sold by weight yet", strict=True)
def test_plum_by_weight():
    assert price("plum") == 0.5


@pytest.mark.slid("4a1b9e7f3c2d4e5f8a9b0c1d2e3f4a5b", data_center="eu-central-1")
@pytest.mark.rp_attributes("browser:chrome", platform="linux")
def test_checkout_page_in_browser(rp_bts):
    rp_bts.attribute("page", "checkout")
    assert "Checkout" in "<title>Basket</title>"


@pytest.mark.issue("SHOP-17", url="https://jira.example.com/browse/SHOP-17")
def test_known_rounding_issue():
    """Known bug: linked to SHOP-17, never filed."""
    assert cart_total(["plum"]) == 12
