"""Routes of the signed-in user's own account: the second login step and two-factor set-up.

Not namespaced: the login flow and the middleware name them ``otp-verify``, ``otp-setup``...
"""

from django.urls import path

from tenants import twofactor

urlpatterns = [
    path("login/verify/", twofactor.otp_verify, name="otp-verify"),
    path("account/two-factor/", twofactor.otp_setup, name="otp-setup"),
    path(
        "account/two-factor/recovery-codes/",
        twofactor.otp_recovery_codes,
        name="otp-recovery-codes",
    ),
    path("account/two-factor/disable/", twofactor.otp_disable, name="otp-disable"),
    path("account/two-factor/reset/", twofactor.otp_reset, name="otp-reset"),
]
