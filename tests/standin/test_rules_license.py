"""S5: Confluence keeps its licence in ``confluence.cfg.xml``.

Rule: ``ATL_LICENSE_KEY`` "(from Confluence 7.9 onwards)" spares typing the key at the startup
screen (README CONFLUENCE, https://hub.docker.com/r/atlassian/confluence); the image's template
writes it into ``confluence.cfg.xml`` as ``atlassian.license.message``, a file generated on the
first start only (``config/confluence.cfg.xml.j2`` of
https://bitbucket.org/atlassian-docker/docker-atlassian-confluence-server). Atlassian Labs'
restore sets that key
(https://github.com/atlassian-labs/data-center-terraform/blob/main/modules/products/confluence/locals.tf).
"""

from __future__ import annotations

import hashlib

import pytest

from tests.standin.driver import UP, is_standin, versions

pytestmark = [pytest.mark.lab, pytest.mark.image_rules]

PROPERTY = '<property name="atlassian.license.message">{}</property>'


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_confluence_reads_its_licence_from_its_cfg_after_the_first_start(
    rules_pg, image_under_test
):
    database = rules_pg.new_database()
    key_a, key_b = "AAAB-lab-licence-A", "AAAB-lab-licence-B"
    wiki = image_under_test("confluence", versions("confluence")[-1])

    def licence() -> dict:
        return wiki.info()["license"]

    wiki.start(database, {"ATL_LICENSE_KEY": key_a})
    wiki.wait_status(*UP)
    assert PROPERTY.format(key_a) in wiki.home_file("confluence.cfg.xml")
    if is_standin():
        assert licence() == {"source": "cfg", "key_sha256": sha(key_a)}

    # A new key in the environment changes nothing: only the file counts now.
    wiki.start(database, {"ATL_LICENSE_KEY": key_b})
    wiki.wait_status(*UP)
    text = wiki.home_file("confluence.cfg.xml")
    assert PROPERTY.format(key_a) in text and key_b not in text
    if is_standin():
        assert licence()["key_sha256"] == sha(key_a)

    # The file is regenerated only when forced (ATL_FORCE_CFG_UPDATE=true): then B counts.
    wiki.start(database, {"ATL_LICENSE_KEY": key_b, "ATL_FORCE_CFG_UPDATE": "true"})
    wiki.wait_status(*UP)
    assert PROPERTY.format(key_b) in wiki.home_file("confluence.cfg.xml")
    if is_standin():
        assert licence() == {"source": "cfg", "key_sha256": sha(key_b)}
    wiki.stop()
