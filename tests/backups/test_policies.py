"""Policy defaults by product: Bitbucket is backed up cold unless staff choose otherwise,
because its home and database must come from the same moment (plan #13 P6); the lab proof is
tests/backups/lab/test_bitbucket.py."""

from __future__ import annotations

import pytest

from backups.models import BackupPolicy
from backups.policies import policy_defaults
from backups.services import backup_start, policy_for, policy_update
from panel.access import access_for_user
from provisioning.products import Product
from tests.backups.factories import backup_host, with_backup_host
from tests.support.factories import make_instance

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("product", Product.values)
@pytest.mark.parametrize("tier", ["tier0", "tier3"])
def test_bitbucket_defaults_to_cold_and_every_other_product_to_hot(product, tier):
    defaults = policy_defaults(tier, product)
    assert defaults["mode"] == ("cold" if product == "bitbucket" else "hot")
    # the product changes the mode only, never the schedule or the retention the tier needs
    assert {k: v for k, v in defaults.items() if k != "mode"} == {
        k: v for k, v in policy_defaults(tier, "jira-software").items() if k != "mode"
    }


@pytest.fixture
def app(app_host):
    return with_backup_host(app_host, backup_host())


def test_a_new_bitbucket_instance_gets_a_cold_policy_and_its_backups_are_cold(acme, alice, app):
    bitbucket = make_instance(acme, "acme-git", product="bitbucket", version="9.4.0", host=app)
    jira = make_instance(acme, "acme-jira", host=app)
    assert policy_for(bitbucket).mode == "cold"
    assert policy_for(jira).mode == "hot"
    op = backup_start(actor=access_for_user(alice), instance=bitbucket)
    assert op.params["mode"] == "cold"
    # a hot backup can still be asked for explicitly (the lab's negative control does)
    assert backup_start(actor=None, instance=jira, mode="hot").params["mode"] == "hot"


def test_an_existing_hot_bitbucket_policy_stays_hot(acme, alice, app):
    """No data migration: an existing policy keeps the downtime its customer agreed to."""
    bitbucket = make_instance(acme, "acme-git", product="bitbucket", version="9.4.0", host=app)
    BackupPolicy.objects.create(instance=bitbucket, **policy_defaults("tier3", "jira-software"))
    assert policy_for(bitbucket).mode == "hot"
    assert backup_start(actor=access_for_user(alice), instance=bitbucket).params["mode"] == "hot"


def test_staff_may_set_a_bitbucket_policy_hot(acme, sam, app):
    bitbucket = make_instance(acme, "acme-git", product="bitbucket", version="9.4.0", host=app)
    policy = policy_for(bitbucket)
    policy_update(actor=access_for_user(sam), policy=policy, mode="hot")
    policy.refresh_from_db()
    assert policy.mode == "hot"
