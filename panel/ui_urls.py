"""Routes of pages that belong to no single app: login and logout.

The dashboard is drawn by the provisioning app (``provisioning.dashboard_urls``), which the
root URLconf includes by name: ``panel`` imports no domain app.
"""

from django.contrib.auth import views as auth_views
from django.urls import path

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="registration/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
