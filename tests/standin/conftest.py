"""Fixtures of the image rule tests (``tests/standin``): a throwaway PostgreSQL per module and a
factory of :class:`tests.standin.driver.ImageUnderTest` that cleans up after each test.

Markers (registered in pyproject.toml):

* ``image_rules``: a rule the real ``atlassian/*`` images keep; every test here has it.
* ``needs_standin_api``: uses ``/rest/standin/1.0/*``; skipped when the images under test are
  not the lab's stand-ins (``PANEL_RULES_IMAGE_PREFIX`` names another prefix).
* ``needs_setup``: needs a set-up product (RUNNING, not FIRST_RUN). The stand-ins need no
  setup; on real images the test runs only if ``PANEL_RULES_LICENSE_<PRODUCT>`` holds an
  evaluation licence (https://my.atlassian.com/license/evaluation) and is skipped otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.lab.labkit import Sandbox
from tests.standin.driver import ImageUnderTest, Postgres, image_prefix, is_standin


def _product_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("product") if callspec else None


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip, with the reason, what the images under test cannot do."""
    if item.get_closest_marker("needs_standin_api") and not is_standin():
        pytest.skip(
            f"uses the stand-in's /rest/standin/1.0 API; the images under test are "
            f"{image_prefix()!r}, not the lab's stand-ins"
        )
    if item.get_closest_marker("needs_setup") and not is_standin():
        product = _product_of(item) or ""
        var = "PANEL_RULES_LICENSE_" + product.upper().replace("-", "_")
        if not os.environ.get(var):
            pytest.skip(f"needs a set-up {product or 'product'}: set {var} to an evaluation key")


@pytest.fixture(scope="module")
def rules_box() -> Iterator[Sandbox]:
    """One private network per module for the databases and the images under test."""
    box = Sandbox(prefix="panel-rules")
    yield box
    box.close()


@pytest.fixture(scope="module")
def rules_pg(rules_box: Sandbox) -> Postgres:
    """A throwaway PostgreSQL server (alias ``db``) shared by the module's tests."""
    return Postgres(rules_box)


@pytest.fixture
def image_under_test(rules_box: Sandbox) -> Iterator[Callable[..., ImageUnderTest]]:
    """``image_under_test(product, version)``: a new image with its own home volume,
    removed (container and volume) after the test."""
    made: list[ImageUnderTest] = []

    def make(product: str, version: str, box: Sandbox | None = None) -> ImageUnderTest:
        image = ImageUnderTest(product, version, box or rules_box)
        made.append(image)
        return image

    yield make
    for image in made:
        image.close()
