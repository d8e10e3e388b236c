"""UI routes of the notifications app (the paths people use did not change when it moved)."""

from django.urls import path

from notifications import views

app_name = "notifications"
urlpatterns = [
    path("notifications/", views.notification_settings, name="notification_settings"),
    path("notifications/test/", views.notification_test, name="notification_test"),
    path(
        "notifications/deliveries/",
        views.notification_delivery_list,
        name="notification_deliveries",
    ),
]
