"""Routes of the user's own account: the second login step, two-factor set-up, and the
password reset by email (Django's names, which its views and mail templates use).

Not namespaced: the login flow and the middleware name them ``otp-verify``, ``otp-setup``...
"""

from django.contrib.auth import views as auth_views
from django.urls import path

from tenants import twofactor, views

urlpatterns = [
    path("password-reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(
            template_name="registration/password_reset_done.html"
        ),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/done/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="registration/password_reset_complete.html"
        ),
        name="password_reset_complete",
    ),
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
