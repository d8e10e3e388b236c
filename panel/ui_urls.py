"""Routes of pages that belong to no single app: login, logout and the dashboard."""

from django.contrib.auth import views as auth_views
from django.urls import path

from panel import twofactor
from provisioning import views as provisioning_views

urlpatterns = [
    path("", provisioning_views.dashboard, name="dashboard"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="registration/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
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
