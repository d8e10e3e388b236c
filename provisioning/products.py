"""The catalogue of Atlassian products the panel runs, and what differs between them."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import models


class Product(models.TextChoices):
    JIRA_SOFTWARE = "jira-software", "Jira Software"
    JIRA_SERVICE_MANAGEMENT = "jira-servicemanagement", "Jira Service Management"
    CONFLUENCE = "confluence", "Confluence"
    BITBUCKET = "bitbucket", "Bitbucket"
    BAMBOO = "bamboo", "Bamboo"
    CROWD = "crowd", "Crowd"


@dataclass(frozen=True)
class ProductSpec:
    """Facts of one product's official Docker image the panel relies on."""

    product: str
    image: str  # name under PANEL_IMAGE_PREFIX
    http_port: int
    extra_ports: tuple[int, ...]
    uid: int
    home: str
    env_style: str  # "atl" (ATL_* variables) or "bitbucket" (SERVER_* / JDBC_*)
    versions: tuple[str, ...]
    min_heap_mb: int = 512
    takes_license_env: bool = False
    extra_dirs: tuple[str, ...] = field(default=())


CATALOGUE: dict[str, ProductSpec] = {
    Product.JIRA_SOFTWARE: ProductSpec(
        Product.JIRA_SOFTWARE,
        "jira-software",
        8080,
        (),
        2001,
        "/var/atlassian/application-data/jira",
        "atl",
        ("9.12.0", "9.17.0"),
        768,
    ),
    Product.JIRA_SERVICE_MANAGEMENT: ProductSpec(
        Product.JIRA_SERVICE_MANAGEMENT,
        "jira-servicemanagement",
        8080,
        (),
        2001,
        "/var/atlassian/application-data/jira",
        "atl",
        ("5.12.0", "5.17.0"),
        768,
    ),
    Product.CONFLUENCE: ProductSpec(
        Product.CONFLUENCE,
        "confluence",
        8090,
        (8091,),
        2002,
        "/var/atlassian/application-data/confluence",
        "atl",
        ("8.5.0", "8.9.0"),
        1024,
        takes_license_env=True,
        extra_dirs=("keys",),
    ),
    Product.BITBUCKET: ProductSpec(
        Product.BITBUCKET,
        "bitbucket",
        7990,
        (7999,),
        2003,
        "/var/atlassian/application-data/bitbucket",
        "bitbucket",
        ("8.19.0", "9.4.0"),
        512,
    ),
    Product.BAMBOO: ProductSpec(
        Product.BAMBOO,
        "bamboo",
        8085,
        (),
        2005,
        "/var/atlassian/application-data/bamboo",
        "atl",
        ("9.6.0",),
        512,
    ),
    Product.CROWD: ProductSpec(
        Product.CROWD,
        "crowd",
        8095,
        (),
        2004,
        "/var/atlassian/application-data/crowd",
        "atl",
        ("5.3.0",),
        512,
    ),
}


def spec_for(product: str) -> ProductSpec:
    return CATALOGUE[Product(product)]


def versions_for(product: str) -> tuple[str, ...]:
    """Versions offered for ``product``: the catalogue's plus ``PANEL_EXTRA_VERSIONS``.

    ``PANEL_EXTRA_VERSIONS`` is ``product=v1|v2,product=v3`` (the lab adds its broken tag).
    """
    extra: list[str] = []
    for item in getattr(settings, "PANEL_EXTRA_VERSIONS", []):
        name, _, values = item.partition("=")
        if name == product:
            extra.extend(v for v in values.split("|") if v)
    return spec_for(product).versions + tuple(
        v for v in extra if v not in spec_for(product).versions
    )
