"""Admin API of the webhooks channel: ``/v1/partners…`` and ``/v1/deliveries…`` (admin token)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from ..config import get_settings
from ..errors import Problem, ValidationFailed
from ..webhooks import registry, service
from ..webhooks.guard import Guard
from ..webhooks.timeparse import iso, parse_since
from .auth import require_admin_token
from .body import read_json
from .openapi import json_body, register

# The webhook body partners receive is documented beside the API, from the same schema file.
register("event", "Event")

router = APIRouter(tags=["partners"], dependencies=[Depends(require_admin_token)])

NAME = Path(..., pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="The partner's name.")
DELIVERY = Path(..., pattern=r"^msg_[A-Za-z0-9_]{1,64}$", description="The delivery id (also its webhook-id).")
Status = Literal["pending", "succeeded", "failed", "skipped"]
_COMMON = {401: {"description": "Missing or wrong admin token"}, 404: {"description": "No such partner or delivery"}}
_BODY = {**_COMMON, 400: {"description": "Malformed JSON"}, 413: {"description": "Body too large"},
         415: {"description": "Not JSON"}, 422: {"description": "Invalid configuration: every problem with its JSON path"}}


def _guard() -> Guard:
    return Guard.from_settings(get_settings())


def _shown(name: str) -> dict:
    return registry.shown(name)


def enqueue_deliveries(delivery_ids: list[str]) -> None:
    # Imported here: the API loads without a broker for docs.
    from syndicate.workers.webhooks import enqueue_deliveries as enqueue

    enqueue(delivery_ids)


@router.post("/v1/partners", status_code=201, summary="Register a partner; the answer holds its secret, shown once",
             openapi_extra=json_body("partner", "Partner", "The partner; see src/syndicate/schemas/partner.schema.json."),
             responses={**_BODY, 201: {"description": "Created; `secret` is shown only here"},
                        409: {"description": "A partner with this name exists"}})
async def add_partner(request: Request) -> JSONResponse:
    config = await read_json(request)
    record, secret = await run_in_threadpool(registry.add, config, _guard())
    return JSONResponse({"partner": registry.public(record), "secret": secret}, status_code=201,
                        headers={"Location": f"/v1/partners/{record['name']}"})


@router.get("/v1/partners", summary="Every partner (no secrets)")
def list_partners() -> JSONResponse:
    return JSONResponse({"partners": [registry.public(r) for r in registry.all_partners()]})


@router.get("/v1/partners/{name}", summary="One partner with its health", responses=_COMMON)
def show_partner(name: str = NAME) -> JSONResponse:
    return JSONResponse(_shown(name))


@router.put("/v1/partners/{name}", summary="Replace a partner's configuration (secrets and log stay)",
            openapi_extra=json_body("partner", "Partner", "The whole new configuration."), responses=_BODY)
async def replace_partner(request: Request, name: str = NAME) -> JSONResponse:
    config = await read_json(request)
    await run_in_threadpool(registry.replace_config, name, config, _guard())
    return JSONResponse(await run_in_threadpool(_shown, name))


@router.delete("/v1/partners/{name}", status_code=204, summary="Remove a partner", responses=_COMMON)
def remove_partner(name: str = NAME) -> Response:
    registry.remove(name)
    return Response(status_code=204)


@router.post("/v1/partners/{name}/enable", summary="Enable a partner", responses=_COMMON)
def enable_partner(name: str = NAME) -> JSONResponse:
    registry.set_enabled(name, True)
    return JSONResponse(_shown(name))


@router.post("/v1/partners/{name}/disable", summary="Disable a partner", responses=_COMMON)
def disable_partner(name: str = NAME, reason: str | None = Query(None, max_length=200)) -> JSONResponse:
    registry.set_enabled(name, False, reason)
    return JSONResponse(_shown(name))


@router.post("/v1/partners/{name}/rotate-secret", summary="New signing secret, shown once; the old one signs during the grace",
             responses=_COMMON)
def rotate_secret(name: str = NAME, grace_hours: float | None = Query(None, ge=0, le=24 * 30)) -> JSONResponse:
    hours = get_settings().webhook_rotation_grace_hours if grace_hours is None else grace_hours
    record, secret = registry.rotate(name, hours * 3600)
    return JSONResponse({"partner": registry.public(record), "secret": secret, "grace_hours": hours})


@router.post("/v1/partners/{name}/recover", status_code=202,
             summary="Re-send failed and skipped deliveries created since a time (409 while the partner is disabled)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                 "type": "object", "required": ["since"], "additionalProperties": False,
                 "properties": {"since": {"type": "string", "format": "date-time"}}}}}}},
             responses={**_BODY, 409: {"description": "The partner is disabled: enable it first"}})
async def recover(request: Request, name: str = NAME) -> JSONResponse:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("since"), str):
        raise ValidationFailed([Problem("$.since", "required: an RFC 3339 time such as 2026-02-05T07:30:00Z")])
    unknown = [k for k in body if k != "since"]
    if unknown:
        raise ValidationFailed([Problem(f"$.{k}", "unknown field; remove it") for k in unknown])
    since = parse_since(body["since"])
    ids = await run_in_threadpool(service.recover, name, since, service.context())
    await run_in_threadpool(enqueue_deliveries, ids)
    return JSONResponse({"partner": name, "since": iso(since), "resent": ids}, status_code=202)


@router.post("/v1/partners/{name}/ping", summary="Send a signed webhook.test event now; answers with the attempt",
             responses=_COMMON)
def ping(name: str = NAME) -> JSONResponse:
    return JSONResponse(service.ping(name, service.context()))


@router.get("/v1/partners/{name}/deliveries", summary="A partner's deliveries, newest first", responses=_COMMON)
def partner_deliveries(name: str = NAME, status: Status | None = None,
                       limit: int = Query(50, ge=1, le=1000)) -> JSONResponse:
    registry.get(name)
    return JSONResponse({"deliveries": service.listing(name, status, limit)})


@router.get("/v1/deliveries", summary="Deliveries, newest first")
def list_deliveries(partner: str | None = Query(None, max_length=64), status: Status | None = None,
                    limit: int = Query(50, ge=1, le=1000)) -> JSONResponse:
    return JSONResponse({"deliveries": service.listing(partner, status, limit)})


@router.get("/v1/deliveries/{delivery_id}", summary="One delivery with its body and every attempt", responses=_COMMON)
def show_delivery(delivery_id: str = DELIVERY) -> JSONResponse:
    return JSONResponse(service.show(delivery_id))


@router.post("/v1/deliveries/{delivery_id}/resend", status_code=202,
             summary="Send again: same webhook-id and body, fresh retry schedule", responses=_COMMON)
def resend(delivery_id: str = DELIVERY) -> JSONResponse:
    service.resend(delivery_id, service.context())
    enqueue_deliveries([delivery_id])
    return JSONResponse(service.show(delivery_id), status_code=202)
