"""Routes of pages that belong to no single app: login, logout and the dashboard."""

from django.contrib.auth import views as auth_views
from django.urls import path

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
]
