"""``coursebridge``: the console's answers and fixes in a terminal (Typer + Rich; ``--json`` for scripts).

It talks to the same admin APIs as the console: ``INGEST_URL`` … ``ANALYTICS_URL`` (else
``http://127.0.0.1:<SERVICE>_PORT``) and ``ADMIN_TOKEN`` (or ``ADMIN_TOKEN_FILE``; with neither, the
development token ``make run`` keeps in ``$COURSEBRIDGE_DATA_DIR/dev-secrets.env``). Actions are audited as
``COURSEBRIDGE_OPERATOR`` (default ``cli:<login>``).

    coursebridge why ana@example.com          coursebridge why HP1234567
    coursebridge resync ana@example.com
    coursebridge deadletters list|show|replay|discard
    coursebridge quarantine list|show|reprocess
    coursebridge products list|map|dry-run

Exit codes: 0 done, 1 a service refused or is unreachable, 2 bad usage.
"""

from __future__ import annotations

import getpass
import json
import os
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from console.adapters.services import DEADLETTER_SERVICES, ServiceError, Services
from console.config import service_urls
from console.domain.buyer import BuyerView, short_time
from console.service_layer import views
from coursebridge.config import secret_env

app = typer.Typer(help=__doc__.split("\n\n")[0], no_args_is_help=True, add_completion=False)
deadletters_app = typer.Typer(help="Dead letters kept by enrollment and subscription.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Webhooks ingest could not understand.", no_args_is_help=True)
products_app = typer.Typer(help="Hotmart product → TalentLMS course mappings.", no_args_is_help=True)
app.add_typer(deadletters_app, name="deadletters")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(products_app, name="products")
out = Console()
err = Console(stderr=True)


class State:
    json: bool = False
    services: Services | None = None


state = State()


def _token() -> str:
    token = secret_env("ADMIN_TOKEN")
    if token:
        return token
    dev = Path(os.environ.get("COURSEBRIDGE_DATA_DIR", ".data")) / "dev-secrets.env"
    if dev.exists():
        for line in dev.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "ADMIN_TOKEN" and value:
                return value
    err.print("[red]ADMIN_TOKEN is not set[/red] (nor ADMIN_TOKEN_FILE, nor a make-run dev-secrets.env)")
    raise typer.Exit(2)


def services() -> Services:
    if state.services is None:
        state.services = Services.from_urls(service_urls(), _token())
    return state.services


def actor() -> str:
    return os.environ.get("COURSEBRIDGE_OPERATOR") or f"cli:{getpass.getuser()}"


def emit(data: Any, render: Any = None) -> None:
    if state.json or render is None:
        print(json.dumps(data, indent=2, default=str))
    else:
        render()


def fail(error: ServiceError) -> None:
    if state.json:
        print(json.dumps({"error": error.service, "status": error.status, "message": error.message}))
    else:
        err.print(f"[red]{error.service}[/red]: {error.message} (HTTP {error.status or 'unreachable'})")
    raise typer.Exit(1)


@app.callback()
def main_options(
    json_output: Annotated[bool, typer.Option("--json", help="JSON on stdout, for scripts")] = False,
) -> None:
    state.json = json_output


# --- why / resync -----------------------------------------------------------------------------------------


def _view_json(view: BuyerView) -> dict[str, Any]:
    return {
        "query": view.query,
        "kind": view.kind,
        "emails": view.emails,
        "courses": [c.__dict__ | {"actions": [a.__dict__ for a in c.actions]} for c in view.courses],
        "parked": view.parked,
        "timeline": [e.__dict__ | {"actions": [a.__dict__ for a in e.actions]} for e in view.timeline],
        "errors": view.errors,
    }


@app.command()
def why(query: Annotated[str, typer.Argument(help="e-mail, transaction (HP…) or subscriber code")]) -> None:
    """Why does this buyer (not) have access: every course with its reason, and the timeline."""
    view = views.find_buyer(services(), query)

    def render() -> None:
        for service, message in view.errors.items():
            err.print(f"[yellow]{service}[/yellow]: {message} — its part is missing")
        if not view.found:
            out.print(f"Nothing is known for {view.query} ({view.kind.replace('_', ' ')}).")
            return
        table = Table("buyer", "course", "status", "why", "fix", title="Access now")
        for c in view.courses:
            name = f"{c.course_id} · {c.course_name}" if c.course_name else c.course_id
            table.add_row(c.email, name, c.status, c.reason, ", ".join(a.label for a in c.actions))
        for p in view.parked:
            table.add_row(
                p["email"],
                f"product {p.get('product_id')}",
                "parked",
                f"not mapped since {short_time(p.get('since'))}",
                "map the product",
            )
        out.print(table)
        timeline = Table("when", "service", "what", "detail", title="Timeline")
        for e in view.timeline:
            timeline.add_row(short_time(e.at), e.service, e.title, e.detail)
        out.print(timeline)

    emit(_view_json(view), render)
    if view.errors and not view.found:
        raise typer.Exit(1)  # nothing could be asked: not "nothing is known"


@app.command()
def resync(email: str) -> None:
    """Recompute the buyer's courses, re-read TalentLMS and act (also retries failed entitlements)."""
    try:
        answer = services().resync(email, actor())
    except ServiceError as error:
        fail(error)
    emit(answer, lambda: out.print(f"queued: position {(answer.get('queue') or {}).get('position')}"))


# --- dead letters -----------------------------------------------------------------------------------------


def _service_option(value: str | None) -> tuple[str, ...]:
    if value is None:
        return DEADLETTER_SERVICES
    if value not in DEADLETTER_SERVICES:
        err.print(f"--service must be one of {', '.join(DEADLETTER_SERVICES)}")
        raise typer.Exit(2)
    return (value,)


@deadletters_app.command("list")
def deadletters_list(
    service: Annotated[str | None, typer.Option(help="enrollment or subscription")] = None,
    status: Annotated[str, typer.Option(help="held, replayed, discarded or all")] = "held",
) -> None:
    """Dead letters, with why and how often they failed."""
    items = []
    try:
        for name in _service_option(service):
            items += [{**item, "service": name} for item in services().deadletters(name, status)]
    except ServiceError as error:
        fail(error)

    def render() -> None:
        table = Table("service", "id", "event", "status", "attempts", "first failure", "reason")
        for d in items:
            table.add_row(
                d["service"],
                d["id"],
                str(d.get("event_type")),
                str(d.get("status")),
                str(d.get("attempts")),
                short_time(d.get("first_failure_at")),
                str(d.get("reason")),
            )
        out.print(table)

    emit(items, render)


@deadletters_app.command("show")
def deadletters_show(service: str, letter_id: str) -> None:
    """One dead letter with its message (personal data masked)."""
    _service_option(service)
    try:
        emit(services().deadletter(service, letter_id))
    except ServiceError as error:
        fail(error)


@deadletters_app.command("replay")
def deadletters_replay(
    service: Annotated[str | None, typer.Argument(help="enrollment or subscription")] = None,
    letter_id: Annotated[str | None, typer.Argument()] = None,
    all_held: Annotated[bool, typer.Option("--all", help="every held letter, each at most once")] = False,
) -> None:
    """Handle a letter once more by its service; with --all every held letter at most once, then a summary."""
    if letter_id is None and not all_held:
        err.print("give SERVICE ID, or --all")
        raise typer.Exit(2)
    targets: list[tuple[str, str]] = []
    try:
        if all_held:
            for name in _service_option(service):  # the ids are taken once: nothing is retried in a run
                targets += [(name, d["id"]) for d in services().deadletters(name, "held")]
        else:
            targets = [(_service_option(service)[0], letter_id or "")]
        results = [
            {"service": name, **services().deadletter_action(name, doc_id, "replay", actor())}
            for name, doc_id in targets
        ]
    except ServiceError as error:
        fail(error)
    summary = dict(Counter(r.get("outcome") or r.get("error") or "?" for r in results))

    def render() -> None:
        for r in results:
            out.print(
                f"{r['service']} {r.get('id', '')}: {r.get('outcome') or r.get('message')}"
                + (f" — {r['reason']}" if r.get("reason") else "")
            )
        out.print(f"letters: {len(results)}; " + ", ".join(f"{k}: {v}" for k, v in summary.items()))

    emit({"results": results, "summary": {"letters": len(results), **summary}}, render)


@deadletters_app.command("discard")
def deadletters_discard(service: str, letter_id: str) -> None:
    """Give up on a letter on purpose (kept as discarded, with your name)."""
    _service_option(service)
    try:
        answer = services().deadletter_action(service, letter_id, "discard", actor())
    except ServiceError as error:
        fail(error)
    emit(answer, lambda: out.print(f"{letter_id}: {answer.get('outcome') or answer.get('message')}"))


# --- quarantine -------------------------------------------------------------------------------------------


@quarantine_app.command("list")
def quarantine_list(
    every: Annotated[bool, typer.Option("--all", help="also those already reprocessed")] = False,
) -> None:
    """Quarantined webhooks still waiting, with the reason."""
    try:
        items = services().quarantine(status=None if every else "quarantined")
    except ServiceError as error:
        fail(error)

    def render() -> None:
        table = Table("id", "received", "event", "status", "reason")
        for q in items:
            table.add_row(
                q["id"],
                short_time(q.get("received_at")),
                str(q.get("hotmart_event")),
                str(q.get("status")),
                str(q.get("reason")),
            )
        out.print(table)

    emit(items, render)


@quarantine_app.command("show")
def quarantine_show(quarantine_id: str) -> None:
    """One quarantined body with the reason (personal fields masked)."""
    try:
        emit(services().quarantined(quarantine_id))
    except ServiceError as error:
        fail(error)


@quarantine_app.command("reprocess")
def quarantine_reprocess(quarantine_id: str) -> None:
    """Run a quarantined body through today's normaliser."""
    try:
        answer = services().reprocess(quarantine_id, actor())
    except ServiceError as error:
        fail(error)
    emit(
        answer,
        lambda: out.print(
            f"{answer.get('status')}" + (f": {answer['reason']}" if answer.get("reason") else "")
        ),
    )


# --- products ---------------------------------------------------------------------------------------------


@products_app.command("list")
def products_list() -> None:
    """Mapped products and TalentLMS's courses."""
    try:
        mappings, courses = services().products(), services().courses()
    except ServiceError as error:
        fail(error)

    def render() -> None:
        table = Table("product", "courses", "plans", "revision")
        for m in mappings:
            plans = "; ".join(f"{p}: {','.join(c)}" for p, c in (m.get("plans") or {}).items())
            table.add_row(
                str(m.get("product_id")), ", ".join(m.get("course_ids") or []), plans, str(m.get("revision"))
            )
        out.print(table)
        out.print("TalentLMS courses: " + ", ".join(f"{c['id']} ({c.get('name')})" for c in courses))

    emit({"products": mappings, "courses": courses}, render)


def _mapping(product_id: str, course_ids: list[str], dry_run: bool) -> None:
    try:
        answer = services().map_product(product_id, {"course_ids": course_ids}, actor(), dry_run=dry_run)
    except ServiceError as error:
        fail(error)

    def render() -> None:
        if dry_run:
            out.print(
                f"{answer['students_gaining']} student(s) would gain, {answer['students_losing']} would "
                f"lose courses (of {answer['students_with_access']}); nothing changed"
            )
            for course, f in (answer.get("courses") or {}).items():
                out.print(f"  course {course}: +{f['gain']} / -{f['lose']}")
        else:
            out.print(
                f"product {product_id} → courses {', '.join(answer.get('course_ids') or [])} "
                f"(revision {answer.get('revision')})"
            )

    emit(answer, render)


@products_app.command("dry-run")
def products_dry_run(product_id: str, course_ids: list[str]) -> None:
    """Who would gain or lose which courses if PRODUCT_ID mapped to COURSE_IDS (nothing changes)."""
    _mapping(product_id, course_ids, dry_run=True)


@products_app.command("map")
def products_map(product_id: str, course_ids: list[str]) -> None:
    """Map PRODUCT_ID to COURSE_IDS (audited with your name); read the dry run first."""
    _mapping(product_id, course_ids, dry_run=False)


def main() -> None:
    app()
