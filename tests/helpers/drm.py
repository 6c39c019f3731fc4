"""Content keys of the DRM tests and the browser ClearKey tests."""

from __future__ import annotations

import base64

KID = "10f2b3c4d5e6f708192a3b4c5d6e7f80"
KEY = "3a1c5e7f9b2d4f6081a3c5e7092b4d6f"
KID2 = "2222b3c4d5e6f708192a3b4c5d6e7f80"
KEY2 = "4b2d6f8a0c3e5f7192b4d6f8103c5e70"
WRONG = "00112233445566778899aabbccddeeff"


def b64url(hex_text: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(hex_text)).decode().rstrip("=")
