"""Two-factor helpers for tests: a confirmed TOTP device and the code it shows now."""

from __future__ import annotations

import base64

from django_otp.oath import TOTP

from tenants.models import SealedTOTPDevice


def staff_otp_device(user) -> str:
    """Give ``user`` a confirmed TOTP device; returns its base32 secret."""
    device = SealedTOTPDevice.objects.create(user=user, name="test", confirmed=True)
    return base64.b32encode(device.bin_key).decode()


def totp_now(secret: str) -> str:
    """The 6-digit code an authenticator app would show for ``secret`` right now."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    totp = TOTP(key, step=30, t0=0, digits=6)
    return f"{totp.token():06d}"
