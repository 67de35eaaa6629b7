"""HTTP routes of the newsletters channel."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["newsletters"])
