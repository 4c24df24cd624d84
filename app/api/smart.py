"""The clinician form opened from the EHR: SMART App Launch 2.x, EHR launch.

`GET /smart/launch?iss&launch` (the EHR opens it, or a CDS card's `smart` link) sends the
browser to the issuer's authorisation endpoint; `GET /smart/callback?code&state` takes the
code back, reads the patient's record from the EHR's FHIR server and decides and records it
like a bundle loaded into the form, then shows the form filled in, each value saying which
resource it came from (`/?evaluation=<id>`).

Who the clinician is: the one signed in to Eligo, as for everything else on the form. A
launch from a browser not signed in goes through the sign-in page first and comes back to the
launch URL, before any authorisation is asked for (an authorisation code lives a minute or
so, too short to wait on a sign-in). The EHR's id_token is not asked for: Eligo's record
names its own accounts, and a fhirUser would need a mapping to them that nobody maintains.

The launch's state and PKCE verifier travel in a signed, HttpOnly, SameSite=Lax cookie that
lives ten minutes (Lax: the callback is a top-level navigation from the EHR's site, which a
Strict cookie would not come back with), used once. HTML pages, out of the OpenAPI document
like the rest of the form.
"""

from __future__ import annotations

import time
from urllib.parse import quote, urlencode

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from app.api import web, web_auth
from app.api.cds_hooks import base_url
from app.api.deps import DbSession
from app.errors import EligoError
from app.fhir import smart
from app.services import evaluations as service
from app.services import smart_launch
from app.settings import Settings

router = APIRouter(include_in_schema=False)
COOKIE = "smart"
MAX_PARAMETER = 2000  # characters of iss, launch, code or state: no real one is longer


@router.get("/smart/launch", response_class=HTMLResponse)
def launch(
    *,
    request: Request,
    session: DbSession,
    rules: web.Rules,
    settings: web.Config,
    iss: str = "",
    launch: str = "",
    via: str = "",
) -> Response:
    """Synchronous: it fetches the issuer's configuration (in a worker thread). The issuer is
    judged first, so a launch naming another is refused without a sign-in or a request."""
    try:
        _bounded(iss, launch)
        smart_launch.issuer(settings, iss)
    except smart.LaunchRefused as exc:
        return _refused(request, settings, exc)
    viewer = web._who(request, session, settings)
    if viewer is None:
        return _sign_in_first(request, settings, iss, launch)
    try:
        started = smart_launch.start(
            _http(request),
            settings,
            rules,
            iss=iss,
            launch_token=launch,
            base_url=_base(request, settings),
            clinician=viewer.username,
            now=int(time.time()),
        )
    except smart.LaunchRefused as exc:
        return _refused(request, settings, exc)
    response = _onwards(request, settings, started.url, after_sign_in=via == "sign-in")
    response.set_cookie(
        web_auth.cookie_name(COOKIE, request, settings),
        started.sealed,
        max_age=smart.STATE_SECONDS,
        path="/",
        secure=web_auth.secure(request, settings),
        httponly=True,
        samesite="lax",
    )
    return response


@router.get("/smart/callback", response_class=HTMLResponse)
def callback(
    *,
    request: Request,
    session: DbSession,
    rules: web.Rules,
    settings: web.Config,
    code: str = "",
    state: str = "",
    error: str = "",
) -> Response:
    """The cookie is spent once the state matched, whatever happens next; a callback that
    does not match leaves it alone, so a forged one cannot break a launch under way."""
    viewer = web._who(request, session, settings)
    if viewer is None:
        return web._no_viewer(request, settings)
    try:
        _bounded(code, state)
        if error:
            raise smart.LaunchRefused(
                "Access refused",
                f"The EHR's authorisation server did not authorise Eligo "
                f"({smart.printable(error)}). Nothing was read.",
                403,
            )
        sealed = request.cookies.get(web_auth.cookie_name(COOKIE, request, settings))
        found = smart_launch.resume(settings, sealed, state, viewer.username, int(time.time()))
    except smart.LaunchRefused as exc:
        return _refused(request, settings, exc)
    response = _finish(request, session, rules, settings, viewer=viewer, found=found, code=code)
    response.delete_cookie(
        web_auth.cookie_name(COOKIE, request, settings),
        path="/",
        secure=web_auth.secure(request, settings),
        httponly=True,
        samesite="lax",
    )
    return response


def _sign_in_first(request: Request, settings: Settings, iss: str, launch: str) -> Response:
    """To the sign-in page, which comes back here (marked, see `_onwards`) once signed in."""
    if settings.sign_in != "local":
        return web._no_viewer(request, settings)
    back = "/smart/launch?" + urlencode({"iss": iss, "launch": launch, "via": "sign-in"})
    return RedirectResponse(f"/sign-in?next={quote(back, safe='')}", status_code=303)


def _onwards(request: Request, settings: Settings, url: str, *, after_sign_in: bool) -> Response:
    """To the authorisation endpoint: a redirect; but straight after the sign-in form a page
    that goes on by itself (Refresh), because the form's CSP `form-action 'self'` also
    governs the redirects that follow a form's post, and the browser would stop at the EHR."""
    if not after_sign_in:
        return RedirectResponse(url, status_code=302)
    response = web._page(request, settings, "smart_continue.html", {"url": url})
    response.headers["refresh"] = f"0; url={url}"
    return response


def _finish(
    request: Request,
    session: DbSession,
    rules: web.Rules,
    settings: Settings,
    *,
    viewer: web_auth.Viewer,
    found: smart.Launch,
    code: str,
) -> Response:
    """Read the record, then decide and record it as the form does a loaded bundle, as a
    launch from the EHR (channel `smart-launch`, with the issuer it was read from)."""
    try:
        bundle = smart_launch.finish(
            _http(request), settings, rules, found, code=code, base_url=_base(request, settings)
        )
    except smart.LaunchRefused as exc:
        return _refused(request, settings, exc)
    launched = service.SmartLaunch(viewer.username, found.iss)
    decided = web._decide(
        request, session, rules, settings, service.PatientInput(fhir=bundle), channel=launched
    )
    if isinstance(decided, Response):
        return decided
    # The record could not be used (a value out of range, a deceased patient): say why.
    context = web._form_context(rules, viewer, {}, {"fhir": "; ".join(decided.values())})
    return web._page(request, settings, "form.html", context, 422)


def _bounded(*values: str) -> None:
    if any(len(value) > MAX_PARAMETER for value in values):
        raise smart.LaunchRefused("Launch refused", "A launch parameter is too long.")


def _http(request: Request) -> httpx.Client:
    """The app's client for EHR servers: timed out, never following redirects (a redirect
    could lead a token or a request somewhere not allow-listed)."""
    http: httpx.Client = request.app.state.fhir_http
    return http


def _base(request: Request, settings: Settings) -> str:
    """ELIGO_PUBLIC_URL, else (development) the URL as reached if its Host is allowed."""
    try:
        return base_url(request, settings)
    except EligoError:
        raise smart.LaunchRefused(
            "SMART launch not configured",
            "Eligo does not know its own address to give the EHR as redirect_uri: set "
            "ELIGO_PUBLIC_URL.",
            500,
        ) from None


def _refused(request: Request, settings: Settings, exc: smart.LaunchRefused) -> Response:
    return web._page(
        request, settings, "message.html", {"title": exc.title, "message": str(exc)}, exc.status
    )
