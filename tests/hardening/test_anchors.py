"""Allow-list patterns anchor with \\Z: ``$`` also matches before a trailing newline, which
would let ``"name\\n"`` through to a file, an environment or a shell argument (review L5)."""

from __future__ import annotations

import pytest

from backups.restore import _IDENT_RE
from backups.retention import POINT_NAME_RE
from certificates.proxy import _SAFE
from provisioning.compose import ENV_NAME_RE
from provisioning.remote.ssh import _PATH_RE


@pytest.mark.parametrize(
    ("pattern", "good"),
    [
        (_IDENT_RE, "jira_db"),
        (POINT_NAME_RE, "20261201T221644Z-manual"),
        (_SAFE, "/jira"),
        (ENV_NAME_RE, "ATL_PROXY_NAME"),
        (_PATH_RE, "/srv/atlassian"),
    ],
)
def test_a_trailing_newline_is_refused(pattern, good):
    assert pattern.match(good)
    assert pattern.match(good + "\n") is None
