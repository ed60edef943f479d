"""/admin: users, roles, sessions, keys and audit; every route needs ``authgate:admin``."""

from __future__ import annotations

from fastapi import Query, Request, Response
from fastapi.responses import JSONResponse

from authgate.errors import NotFound
from authgate.server.deps import Admin, Svc, client_ip
from authgate.server.routes.auth import mfa_of, mfa_out
from authgate.server.routes.lifecycle import accepted
from authgate.server.routing import PrefixRouter
from authgate.server.schemas import (
    COMMON_ERRORS,
    AcceptedOut,
    AdminSessionOut,
    AdminUserCreate,
    AdminUserOut,
    AdminUserPatch,
    AuditOut,
    ClientCreated,
    ClientIn,
    ClientOut,
    KeyOut,
    RoleIn,
    RoleOut,
    RolePatch,
    UserPage,
    problem_responses,
)
from authgate.service.mfa import MfaStatus
from authgate.storage.base import ClientRecord, KeyRecord, RoleRecord, SessionRecord, UserRecord
from authgate.wiring import Services

router = PrefixRouter(
    prefix="/admin", tags=["admin"], responses=COMMON_ERRORS | problem_responses(403, 404)
)


async def _user(
    svc: Services,
    user: UserRecord,
    role_perms: dict[str, tuple[str, ...]] | None = None,
    mfa: MfaStatus | None = None,
) -> AdminUserOut:
    if role_perms is None:
        permissions = await svc.accounts.permissions(user)
    else:  # a page of users: the roles were read once for all of them
        permissions = tuple(sorted({p for r in user.roles for p in role_perms.get(r, ())}))
    # A page of users: their factors were read once for all of them.
    factors = await mfa_out(svc, user.id) if mfa is None else mfa_of(mfa)
    return AdminUserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        roles=list(user.roles),
        permissions=list(permissions),
        created_at=user.created_at,
        email_verified=user.email_verified,
        mfa=factors,
        disabled=user.disabled,
    )


def _role(role: RoleRecord) -> RoleOut:
    return RoleOut.model_validate(role, from_attributes=True)


def _session(s: SessionRecord) -> AdminSessionOut:
    return AdminSessionOut.model_validate(s, from_attributes=True)


def _key(k: KeyRecord) -> KeyOut:
    return KeyOut.model_validate(k, from_attributes=True)


async def rotate_now(svc: Services, *, by: str) -> list[KeyRecord]:
    """Make the next key of every algorithm current now, audited with the acting admin
    (the admin API and the console both call this)."""
    await svc.keyring.rotate()
    await svc.audit.record("key_rotated", user_id=by)
    return await svc.keyring.records()


async def mail_reset_link(svc: Services, user: UserRecord) -> None:
    """Mail the user a password-reset link asked for by an admin (the admin API and the
    console both call this)."""
    svc.mail.enqueue(await svc.links.reset_mail(user, by="admin"))


@router.get("/users", response_model=UserPage)
async def list_users(
    _: Admin,
    svc: Svc,
    after: str | None = Query(default=None, max_length=64),
    limit: int = Query(default=50, ge=1, le=200),
    email: str | None = Query(default=None, max_length=320),
) -> UserPage:
    """A page of users, ordered by id; pass ``next`` as ``after`` for the next page.
    ``email``: only the users whose address contains it."""
    users = await svc.accounts.list_users(after=after, limit=limit + 1, email=email)
    page = users[:limit]
    role_perms = {r.name: r.permissions for r in await svc.accounts.list_roles()}
    factors = await svc.mfa.statuses([u.id for u in page])
    return UserPage(
        users=[await _user(svc, u, role_perms, factors[u.id]) for u in page],
        next=page[-1].id if len(users) > limit else None,
    )


@router.post(
    "/users", status_code=201, response_model=AdminUserOut, responses=problem_responses(409)
)
async def create_user(body: AdminUserCreate, _: Admin, svc: Svc) -> AdminUserOut:
    """Create a user with roles."""
    user = await svc.accounts.create_user(
        body.email, body.password, name=body.name, roles=body.roles
    )
    return await _user(svc, user)


@router.get("/users/{user_id}", response_model=AdminUserOut)
async def get_user(user_id: str, _: Admin, svc: Svc) -> AdminUserOut:
    """One user."""
    return await _user(svc, await svc.accounts.get(user_id))


@router.patch("/users/{user_id}", response_model=AdminUserOut)
async def patch_user(user_id: str, body: AdminUserPatch, _: Admin, svc: Svc) -> AdminUserOut:
    """Change roles, disable, and/or mark the address verified (``email_verified: true``).
    A role change kills the user's access tokens (a refresh gets the new roles);
    disabling ends every session."""
    await svc.accounts.get(user_id)
    if body.roles is not None:
        await svc.directory.set_roles(user_id, body.roles)
    if body.disabled is not None:
        await svc.directory.set_disabled(user_id, body.disabled)
    if body.email_verified:
        await svc.links.mark_verified(user_id, by="admin")
    return await _user(svc, await svc.accounts.get(user_id))


@router.post("/users/{user_id}/verification-email", status_code=202, response_model=AcceptedOut)
async def resend_verification(user_id: str, _: Admin, svc: Svc) -> JSONResponse:
    """Mail the user a new verification link (nothing if the address is verified)."""
    await svc.links.send_verification(await svc.accounts.get(user_id))
    return accepted("A verification link is on its way, unless the address is verified.")


@router.post("/users/{user_id}/mfa-reset", status_code=204)
async def reset_mfa(user_id: str, request: Request, ctx: Admin, svc: Svc) -> Response:
    """Turn every second factor of the user off (recovery codes too); audited with the
    acting admin, and the user is told by mail."""
    await svc.mfa.reset(user_id, by=ctx.user.id, ip=client_ip(request))
    return Response(status_code=204)


@router.post("/users/{user_id}/reset-link", status_code=202, response_model=AcceptedOut)
async def send_reset_link(user_id: str, _: Admin, svc: Svc) -> JSONResponse:
    """Mail the user a password-reset link; the admin never sees it nor the password."""
    await mail_reset_link(svc, await svc.accounts.get(user_id))
    return accepted("A reset link is on its way to the user's address.")


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: str, _: Admin, svc: Svc) -> Response:
    """Delete a user; every token of theirs dies."""
    await svc.directory.delete_user(user_id)
    return Response(status_code=204)


@router.get("/roles", response_model=list[RoleOut])
async def list_roles(_: Admin, svc: Svc) -> list[RoleOut]:
    """Every role."""
    return [_role(r) for r in await svc.accounts.list_roles()]


@router.post("/roles", status_code=201, response_model=RoleOut, responses=problem_responses(409))
async def create_role(body: RoleIn, _: Admin, svc: Svc) -> RoleOut:
    """Create a role (409 if it exists)."""
    from authgate.errors import Conflict, NotFound

    try:
        await svc.accounts.get_role(body.name)
    except NotFound:
        return _role(await svc.directory.put_role(body.name, body.permissions))
    raise Conflict("the role exists")


@router.get("/roles/{name}", response_model=RoleOut)
async def get_role(name: str, _: Admin, svc: Svc) -> RoleOut:
    """One role."""
    return _role(await svc.accounts.get_role(name))


@router.put("/roles/{name}", response_model=RoleOut)
async def put_role(name: str, body: RolePatch, _: Admin, svc: Svc) -> RoleOut:
    """Replace a role's permissions; the tokens of its holders die (a refresh updates them)."""
    await svc.accounts.get_role(name)
    return _role(await svc.directory.put_role(name, body.permissions))


@router.delete("/roles/{name}", status_code=204)
async def delete_role(name: str, _: Admin, svc: Svc) -> Response:
    """Delete a role; the tokens of its holders die."""
    await svc.directory.delete_role(name)
    return Response(status_code=204)


@router.get("/sessions", response_model=list[AdminSessionOut])
async def list_sessions(
    _: Admin, svc: Svc, user: str = Query(max_length=64)
) -> list[AdminSessionOut]:
    """A user's live sessions."""
    await svc.accounts.get(user)
    return [_session(s) for s in await svc.sessions.list(user)]


@router.delete("/sessions/{sid}", status_code=204)
async def revoke_session(sid: str, _: Admin, svc: Svc) -> Response:
    """Revoke any session."""
    await svc.sessions.end(sid, reason="admin_revoked")
    return Response(status_code=204)


def _client(c: ClientRecord) -> ClientOut:
    return ClientOut(
        client_id=c.client_id,
        name=c.name,
        scopes=list(c.scopes),
        auth_method="none"
        if c.public
        else "private_key_jwt"
        if c.public_jwk
        else "client_secret_basic",
        access_ttl=c.access_ttl,
        created_at=c.created_at,
        revoked_at=c.revoked_at,
        redirect_uris=list(c.redirect_uris),
        post_logout_redirect_uris=list(c.post_logout_redirect_uris),
        public=c.public,
        first_party=c.first_party,
        id_token_signed_response_alg=c.id_token_alg,
    )


@router.get("/clients", response_model=list[ClientOut])
async def list_clients(_: Admin, svc: Svc) -> list[ClientOut]:
    """Every service client (never their secrets)."""
    return [_client(c) for c in await svc.clients.list()]


@router.post("/clients", status_code=201, response_model=ClientCreated)
async def create_client(body: ClientIn, _: Admin, svc: Svc) -> JSONResponse:
    """Create a client; its secret is in this answer and nowhere else, ever."""
    record, secret = await svc.clients.create(
        body.name,
        body.scopes,
        jwk=body.jwk,
        access_ttl=body.access_ttl,
        redirect_uris=body.redirect_uris,
        post_logout_redirect_uris=body.post_logout_redirect_uris,
        public=body.public,
        first_party=body.first_party,
        id_token_alg=body.id_token_signed_response_alg,
    )
    out = ClientCreated(**_client(record).model_dump(), client_secret=secret)
    return JSONResponse(out.model_dump(), status_code=201, headers={"Cache-Control": "no-store"})


@router.delete("/clients/{client_id}", status_code=204)
async def delete_client(client_id: str, _: Admin, svc: Svc) -> Response:
    """Revoke a client: it can no longer authenticate, and its tokens die."""
    if not await svc.clients.revoke(client_id):
        raise NotFound("no such client")
    return Response(status_code=204)


@router.get("/keys", response_model=list[KeyOut])
async def list_keys(_: Admin, svc: Svc) -> list[KeyOut]:
    """Every stored key and its state."""
    return [_key(k) for k in await svc.keyring.records()]


@router.post("/keys/rotate", response_model=list[KeyOut])
async def rotate_keys(ctx: Admin, svc: Svc) -> list[KeyOut]:
    """Make the next key of every algorithm (access and ID tokens) current now."""
    return [_key(k) for k in await rotate_now(svc, by=ctx.user.id)]


@router.get("/audit", response_model=list[AuditOut])
async def audit(
    _: Admin,
    svc: Svc,
    user: str | None = Query(default=None, max_length=64),
    event: str | None = Query(default=None, max_length=64),
    after: int | None = Query(default=None, ge=0, le=2**62),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[AuditOut]:
    """Security events, filtered, in order."""
    rows = await svc.storage.query_audit(user_id=user, event=event, after=after, limit=limit)
    return [
        AuditOut(
            id=r.id, at=r.at, event=r.event, user_id=r.user_id, sid=r.sid, ip=r.ip, detail=r.detail
        )
        for r in rows
    ]
