"""HTTP routes of the feeds channel."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["feeds"])
