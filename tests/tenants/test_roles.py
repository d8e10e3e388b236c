"""Staff roles in the Django admin."""

import pytest


@pytest.mark.django_db
def test_support_staff_may_view_but_not_change_models_in_the_admin(sam):
    assert sam.has_perm("provisioning.view_atlassianinstance")
    assert sam.has_perm("tenants.view_auditevent")
    assert not sam.has_perm("provisioning.change_atlassianinstance")
