"""The clinician web form: server-rendered HTML that works without JavaScript.

`GET /` is the form; `POST /` decides (recorded, channel `form`) and redirects to
`/?evaluation=<id>`, which shows the form filled in with the results beneath it, the page the
CDS Hooks cards link to. A FHIR bundle pasted or uploaded at `POST /fhir` fills the form the
same way, each value saying which resource it came from. `/report/<id>` is the printable
report. Everything decides through the evaluation service, like the API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from app import strict_json
from app.api import web_auth
from app.api.deps import DbSession, current_rules, current_settings, get_settings
from app.db import audit
from app.db.models import Evaluation
from app.engine import words
from app.engine.inputs import InvalidInput
from app.engine.model import RuleBase
from app.services import accounts, compact
from app.services import evaluations as service
from app.settings import Settings
from app.web import forms, view

WEB = Path(__file__).resolve().parent.parent / "web"
templates = Jinja2Templates(directory=WEB / "templates")
templates.env.filters["unit_words"] = words.unit_words
templates.env.filters["number"] = words.number
templates.env.globals["cite_link"] = view.link
templates.env.globals["result_words"] = view.RESULT
templates.env.globals["channel_words"] = words.CHANNELS
templates.env.globals["vocabulary"] = words  # the words a clinician reads, said once
router = APIRouter(include_in_schema=False)

Rules = Annotated[RuleBase, Depends(current_rules)]
Config = Annotated[Settings, Depends(current_settings)]
_EVALUATION_ID = re.compile(r"^[0-9a-f-]{36}$")


SIGN_IN_FIELD_BYTES = 4096  # a user name, a password, a token, a path: never more


def admission(request: Request, session: DbSession, settings: Config) -> web_auth.Viewer | Response:
    """Who posts the clinician form, or the page to answer instead (sign in; a post from
    another site), judged before the body is read: a stranger's megabytes are never parsed.
    The form's own CSRF token is compared once the form is read (`_csrf`)."""
    viewer = _who(request, session, settings)
    if viewer is None:
        return _no_viewer(request, settings)
    return _cross_site(request, settings) or viewer


Admission = Annotated[web_auth.Viewer | Response, Depends(admission)]


async def admitted_form(request: Request, admitted: Admission) -> FormData:
    """The clinician form, read only for an admitted viewer (else empty, its body unread).
    Multipart parts may be as large as a whole request (a pasted FHIR bundle); the body limit
    still applies."""
    if isinstance(admitted, Response):
        return FormData()
    limit = get_settings(request).max_body_bytes
    return await request.form(max_files=1, max_fields=500, max_part_size=limit)


Posted = Annotated[FormData, Depends(admitted_form)]


def sign_in_gate(request: Request, settings: Config) -> Response | None:
    """Before a sign-in or sign-out form is read: the checks of a cross-site post that need
    no body (its origin, the CSRF cookie)."""
    if not settings.auth or settings.sign_in != "local":
        return None
    return _cross_site(request, settings)


Gate = Annotated[Response | None, Depends(sign_in_gate)]


async def small_form(request: Request, refused: Gate) -> FormData:
    """A sign-in or sign-out form: a few short fields, whoever sends it (no one is signed in
    yet), so it is read only past the gate and never more than a few kilobytes of it."""
    if refused is not None:
        return FormData()
    return await request.form(max_files=0, max_fields=10, max_part_size=SIGN_IN_FIELD_BYTES)


SmallForm = Annotated[FormData, Depends(small_form)]


# --- pages ---------------------------------------------------------------------------------


def _page(
    request: Request,
    settings: Settings,
    name: str,
    context: Mapping[str, Any],
    status: int = 200,
) -> Response:
    token, new = web_auth.csrf_value(request, settings)
    response = templates.TemplateResponse(
        request,
        name,
        {"csrf": token, "development": not settings.auth, **context},
        status_code=status,
    )
    if new:
        web_auth.set_cookie(response, request, settings, "csrf", token, samesite="strict")
    return response


def _sign_in_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/sign-in?next={quote(target, safe='')}", status_code=303)


def _who(request: Request, session: Session, settings: Settings) -> web_auth.Viewer | None:
    try:
        return web_auth.viewer(request, session, settings)
    except web_auth.SignInNeeded:
        return None


def _no_viewer(request: Request, settings: Settings) -> Response:
    """Local accounts: to the sign-in page. Proxy: the proxy should have signed them in."""
    if settings.sign_in == "proxy":
        return _page(
            request,
            settings,
            "message.html",
            {
                "title": "Not signed in",
                "message": "Sign-in is handled by your organisation's single sign-on, and this "
                "request did not come through it. Open Eligo from its usual address.",
            },
            401,
        )
    return _sign_in_redirect(request)


def _form_context(
    rules: RuleBase,
    viewer: web_auth.Viewer,
    entries: Mapping[str, forms.Entry],
    errors: Mapping[str, str],
    *,
    evaluation: tuple[Evaluation, compact.Recorded] | None = None,
    fhir_text: str = "",
    chosen: str | None = None,
    patient_id: str = "",
) -> dict[str, Any]:
    """`chosen`: the disease the clinician started with (`ALL_FIELDS` for every field), else
    the one the values record; with neither, and nothing entered, the page asks for it first."""
    known = view.diseases(rules.rulesets.values())
    context: dict[str, Any] = {
        "viewer": viewer,
        "entries": entries,
        "errors": errors,
        "labels": {"patient_id": "Patient identifier"}
        | {k: f.spec.label for k, f in rules.features.items()},
        "fhir_text": fhir_text,
        "evaluation": None,
        "diseases": known,
        "patient_id": patient_id,
    }
    if evaluation is not None:
        context.update(_evaluation_context(*evaluation, rules))
    disease = known.get(chosen or "") or known.get(view.disease_of(entries, known) or "")
    shown = {*entries, *errors, *_targets(context.get("results"))}
    asking = disease.rulesets if disease else tuple(rules.rulesets.values())
    context |= {
        "disease": disease,
        "choose_first": disease is None and chosen != ALL_FIELDS and not shown,
        "sections": view.workup(rules.features, disease, shown),
        "confirmations": view.confirmations(rules.features, asking, shown if disease else None),
    }
    return context


ALL_FIELDS = "all"  # `?disease=all`: every field of the catalogue, no disease recorded


def _targets(results: object) -> set[str]:
    """The fields the results link to (to measure, to confirm): never folded away."""
    if not isinstance(results, view.Results):  # none, or a record that cannot be shown
        return set()
    panels = [p for t in results.therapies for p in t.panels]
    return {f for p in panels for f, _ in p.missing} | {
        t.feature for p in panels for t in p.to_confirm
    }


def _evaluation_context(
    evaluation: Evaluation, recorded: compact.Recorded, rules: RuleBase
) -> dict[str, Any]:
    if recorded.integrity.get("verified") is False:  # never shown as if it were the answer
        return {
            "evaluation": evaluation,
            "results": [],
            "rulesets": [],
            "fhir": None,
            "fhir_from": None,
            "record_problem": recorded.integrity["problem"],
            "verdicts": recorded.content["results"],
            "warnings": recorded.content.get("warnings", []),
        }
    result = recorded.content
    fhir = result.get("fhir")
    return {
        "evaluation": evaluation,
        "results": view.results(result["results"], rules.features),
        "rulesets": [r["ruleset"] for r in result["results"]],
        "fhir": fhir,
        "fhir_from": evaluation.id if "fhir" in evaluation.input_received else None,
        "warnings": result.get("warnings", []),
    }


@router.get("/", response_class=HTMLResponse)
def form_page(
    *,
    request: Request,
    session: DbSession,
    rules: Rules,
    settings: Config,
    evaluation: str | None = None,
    disease: str | None = None,
) -> Response:
    viewer = _who(request, session, settings)
    if viewer is None:
        return _no_viewer(request, settings)
    if evaluation is None:
        context = _form_context(rules, viewer, {}, {}, chosen=disease)
        return _page(request, settings, "form.html", context)
    found = _find(session, evaluation)
    if found is None:
        return _not_found(request, settings, evaluation)
    entries = forms.entries_of(found.input_normalised, rules.features)
    shown = (found, compact.answer(session, rules, found, shown_as="full"))
    return _page(
        request, settings, "form.html", _form_context(rules, viewer, entries, {}, evaluation=shown)
    )


def _find(session: Session, evaluation_id: str) -> Evaluation | None:
    if not _EVALUATION_ID.match(evaluation_id):
        return None
    return audit.get(session, evaluation_id)


def _not_found(request: Request, settings: Settings, evaluation_id: str) -> Response:
    return _page(
        request,
        settings,
        "message.html",
        {
            "title": "Evaluation not found",
            "message": f"There is no evaluation {evaluation_id[:40]!r}. Check the link, or start "
            "a new evaluation.",
        },
        404,
    )


@router.post("/", response_class=HTMLResponse)
def evaluate_form(
    *,
    request: Request,
    admitted: Admission,
    posted: Posted,
    session: DbSession,
    rules: Rules,
    settings: Config,
) -> Response:
    viewer = _admit(request, settings, admitted, posted)
    if isinstance(viewer, Response):
        return viewer
    fields = [(k, v) for k, v in posted.multi_items() if isinstance(v, str)]
    parsed = forms.parse(fields, rules.features)
    chosen = view.diseases(rules.rulesets.values()).get(str(posted.get("disease") or ""))
    if chosen is not None:
        forms.record_diagnosis(parsed, chosen.diagnosis)
    # Pseudonymised by the service before it is stored, as the API's `patient_id`; never
    # logged, never put in a URL, shown again only in this response's form (a value to fix).
    patient_id = str(posted.get("patient_id") or "").strip()
    if too_long := forms.patient_id_error(patient_id):
        parsed.errors["patient_id"] = too_long
    source = _find(session, str(posted.get("fhir_from") or ""))
    fhir = source.input_received.get("fhir") if source is not None else None
    if source is not None and fhir is not None:
        _keep_fhir_values(parsed, forms.entries_of(source.input_normalised, rules.features))
    if parsed.errors:
        forms.check(parsed, rules.features)
    else:
        patient = service.PatientInput(
            features=parsed.features, fhir=fhir, patient_id=patient_id or None
        )
        decided = _decide(
            request, session, rules, settings, patient, channel=service.FormEntry(viewer.username)
        )
        if isinstance(decided, Response):
            return decided
        parsed.errors.update(decided)
    context = _form_context(
        rules,
        viewer,
        parsed.entries,
        parsed.errors,
        chosen=chosen.id if chosen else ALL_FIELDS,
        patient_id=patient_id,
    )
    context["fhir_from"] = source.id if source is not None and fhir is not None else None
    return _page(request, settings, "form.html", context, 422)


def _decide(
    request: Request,
    session: Session,
    rules: RuleBase,
    settings: Settings,
    patient: service.PatientInput,
    *,
    channel: service.FormEntry | service.SmartLaunch,
) -> Response | dict[str, str]:
    """Decide and record, then redirect to the recorded evaluation (post/redirect/get, so a
    reload never decides twice); or the input errors by field."""
    try:
        decided = service.decide(rules, patient, service.Options(), service.Stamp.new())
    except InvalidInput as exc:
        return forms.engine_errors(exc.issues)
    stored, key = request.app.state.stored, settings.pseudonym_secret()
    service.record(session, stored, decided, channel, key)
    return RedirectResponse(f"/?evaluation={decided.answer['id']}", status_code=303)


def _keep_fhir_values(parsed: forms.Parsed, from_fhir: Mapping[str, forms.Entry]) -> None:
    """A value still as FHIR gave it is left to FHIR (so it keeps its provenance); a value
    the clinician changed is sent as theirs and replaces FHIR's."""
    for key, entry in from_fhir.items():
        shown = parsed.entries.get(key)
        if entry.source and shown and (shown.value, shown.unit) == (entry.value, entry.unit):
            parsed.features.pop(key, None)
            shown.source = entry.source


def _admit(
    request: Request, settings: Settings, admitted: web_auth.Viewer | Response, posted: FormData
) -> web_auth.Viewer | Response:
    """Who posts this form (admitted before it was read), or the page to answer instead: sign
    in, a forged post (its token), a field with a character no record can hold."""
    if isinstance(admitted, Response):
        return admitted
    return _csrf(request, settings, posted) or _characters(request, settings, posted) or admitted


def _refused(request: Request, settings: Settings, exc: web_auth.CrossSiteRefused) -> Response:
    return _page(
        request, settings, "message.html", {"title": "Form refused", "message": str(exc)}, 403
    )


def _cross_site(request: Request, settings: Settings) -> Response | None:
    try:
        web_auth.check_csrf_before_body(request, settings)
    except web_auth.CrossSiteRefused as exc:
        return _refused(request, settings, exc)
    return None


def _csrf(request: Request, settings: Settings, posted: FormData) -> Response | None:
    token = posted.get(web_auth.CSRF_FIELD)
    try:
        web_auth.check_csrf(request, settings, token if isinstance(token, str) else None)
    except web_auth.CrossSiteRefused as exc:
        return _refused(request, settings, exc)
    return None


def field_problem(posted: FormData) -> tuple[str, str] | None:
    """(field, what is wrong) for the first form field whose name or value holds U+0000."""
    for name, value in posted.multi_items():
        for text in (name, value) if isinstance(value, str) else (name,):
            problem = strict_json.character_problem(text)
            if problem:
                return strict_json.printable(name), problem
    return None


def _characters(request: Request, settings: Settings, posted: FormData) -> Response | None:
    found = field_problem(posted)
    if found is None:
        return None
    field, problem = found
    message = f"The field '{field}' {problem}. Go back and correct it; nothing was recorded."
    return _page(
        request, settings, "message.html", {"title": "Form refused", "message": message}, 422
    )


@router.post("/fhir", response_class=HTMLResponse)
def load_fhir(
    *,
    request: Request,
    admitted: Admission,
    posted: Posted,
    session: DbSession,
    rules: Rules,
    settings: Config,
) -> Response:
    """Synchronous, so a large bundle is read and parsed in a worker thread."""
    viewer = _admit(request, settings, admitted, posted)
    if isinstance(viewer, Response):
        return viewer
    text = _bundle_text(posted)
    error, bundle = _read_bundle(text, settings)
    if error is None:
        patient = service.PatientInput(fhir=bundle)
        decided = _decide(
            request, session, rules, settings, patient, channel=service.FormEntry(viewer.username)
        )
        if isinstance(decided, Response):
            return decided
        error = "; ".join(decided.values())
    context = _form_context(rules, viewer, {}, {"fhir": error}, fhir_text=text[:200_000])
    return _page(request, settings, "form.html", context, 422)


def _bundle_text(posted: FormData) -> str:
    upload = posted.get("bundle_file")
    if isinstance(upload, UploadFile) and upload.filename:
        raw = upload.file.read()
        return raw.decode("utf-8", errors="replace")
    pasted = posted.get("bundle")
    return pasted if isinstance(pasted, str) else ""


def _read_bundle(text: str, settings: Settings) -> tuple[str | None, Any]:
    """(error, bundle): the JSON problem with line and column, or the places in the bundle
    that break a limit or hold an unacceptable value, in words."""
    if not text.strip():
        return "paste a FHIR R4 Bundle (JSON) or choose a file", None
    limits = strict_json.Limits(settings.max_json_depth, settings.max_json_items)
    try:
        bundle = strict_json.loads_checked(text.encode("utf-8", "surrogatepass"), limits)
    except strict_json.Refused as exc:
        shown = "; ".join(f"{i.field}: {i.message}" for i in exc.issues[:5])
        more = len(exc.issues) - 5 + exc.omitted
        return f"not accepted: {shown}" + (f" (and {more} more)" if more > 0 else ""), None
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", None
    except ValueError as exc:
        return f"not valid JSON: {exc}", None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return 'this JSON is not a FHIR Bundle (resourceType must be "Bundle")', None
    return None, bundle


@router.get("/report/{evaluation_id}", response_class=HTMLResponse)
def report(
    evaluation_id: str,
    request: Request,
    session: DbSession,
    rules: Rules,
    settings: Config,
) -> Response:
    viewer = _who(request, session, settings)
    if viewer is None:
        return _no_viewer(request, settings)
    found = _find(session, evaluation_id)
    if found is None:
        return _not_found(request, settings, evaluation_id)
    context = _form_context(
        rules,
        viewer,
        forms.entries_of(found.input_normalised, rules.features),
        {},
        evaluation=(found, compact.answer(session, rules, found, shown_as="full")),
    )
    shown = context.get("results")
    context["references"] = view.references(shown) if isinstance(shown, view.Results) else []
    return _page(request, settings, "report.html", context)


# --- sign-in -------------------------------------------------------------------------------


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, settings: Config, next: str = "/") -> Response:
    if not settings.auth or settings.sign_in != "local":
        return RedirectResponse(web_auth.safe_next(next), status_code=303)
    return _page(
        request, settings, "sign_in.html", {"next": web_auth.safe_next(next), "username": ""}
    )


@router.post("/sign-in", response_class=HTMLResponse)
def sign_in(
    request: Request, gate: Gate, posted: SmallForm, session: DbSession, settings: Config
) -> Response:
    target = web_auth.safe_next(str(posted.get("next") or "/"))
    if not settings.auth or settings.sign_in != "local":
        return RedirectResponse(target, status_code=303)
    refused = gate or _csrf(request, settings, posted)
    if refused is not None:
        return refused
    username = str(posted.get("username") or "")[:100]
    password = str(posted.get("password") or "")
    found = field_problem(posted)
    if found is not None:  # no account can have it: refused before any look-up
        shown = strict_json.printable(username)
        context = {"next": target, "username": shown, "error": f"The {found[0]} {found[1]}."}
        return _page(request, settings, "sign_in.html", context, 422)
    try:
        source = web_auth.client_source(request, settings)
        clinician = accounts.sign_in(session, username, password, web_auth.now(), source)
    except accounts.SignInRefused as exc:
        context = {"next": target, "username": username, "error": str(exc)}
        return _page(request, settings, "sign_in.html", context, 401)
    now = web_auth.now()
    # Housekeeping at a moment that is rare and not hurried: sessions nobody can use any more.
    accounts.purge_sessions(session, now, settings.session_idle_minutes)
    token = accounts.start_session(session, clinician, now, settings.session_max_hours)
    response = RedirectResponse(target, status_code=303)
    web_auth.set_cookie(response, request, settings, "session", token)
    # A new CSRF token with the new session: one planted before sign-in is worth nothing.
    web_auth.set_cookie(response, request, settings, "csrf", web_auth.new_csrf(), samesite="strict")
    return response


@router.post("/sign-out", response_class=HTMLResponse)
def sign_out(
    request: Request, gate: Gate, posted: SmallForm, session: DbSession, settings: Config
) -> Response:
    refused = gate or _csrf(request, settings, posted)
    if refused is not None:
        return refused
    token = request.cookies.get(web_auth.cookie_name("session", request, settings))
    if token:
        accounts.end_session(session, token)
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(
        web_auth.cookie_name("session", request, settings),
        path="/",
        secure=web_auth.secure(request, settings),
        httponly=True,
    )
    return response
