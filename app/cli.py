"""The `kwanus` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from kwanus.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    """Flags override the environment (`KWANUS_*`), which overrides the defaults."""
    overrides: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "state_dir",
            "api_port",
            "temporal_port",
            "ui_port",
            "api_metrics_port",
            "worker_metrics_port",
        )
        if getattr(args, name, None) is not None
    }
    return Settings(**overrides)


def _dev(args: argparse.Namespace) -> int:
    from app import dev
    from app.binaries import BinaryMissing

    try:
        return dev.run(_settings(args))
    except (dev.DevError, BinaryMissing) as exc:
        print(f"kwanus dev: {exc}", file=sys.stderr)
        return 2


def _worker(args: argparse.Namespace) -> int:
    from app import worker
    from kwanus import logs

    logs.configure(_settings(args))
    asyncio.run(worker.run_worker(_settings(args)))
    _exit_after_temporal(0)  # stopped by a signal: a clean exit, also while it was waiting
    return 0


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from api import metrics
    from api.app import create_app
    from kwanus import logs

    settings = _settings(args)
    logs.configure(settings)  # uvicorn's own lines too: it configures no logging of its own
    app = create_app(settings)
    try:
        metrics.serve(app.state.metrics, settings)
    except OSError as exc:
        print(
            f"kwanus api: metrics on {settings.metrics_host}:{settings.api_metrics_port}: "
            f"{exc.strerror}; choose another port with KWANUS_API_METRICS_PORT (0: none)",
            file=sys.stderr,
        )
        return 2
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_config=None)
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from store.migrate import upgrade

    settings = _settings(args)
    upgrade(settings.database_url)
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    print(f"database at head: {shown}")  # the output of a deploy step is kept: no password
    return 0


def _schedules_apply(args: argparse.Namespace) -> int:
    from app import schedules
    from kwanus.temporal import connect

    async def apply() -> str:
        settings = _settings(args)
        client = await connect(settings, wait=10)
        return await schedules.apply(client, settings.task_queue)

    from temporalio.service import RPCError

    code = 0
    try:
        done = asyncio.run(apply())
        print(f"schedule {schedules.SCHEDULE_ID}: {done} (yearly, {schedules.YEARLY} UTC)")
    except RuntimeError as exc:
        print(f"kwanus schedules apply: Temporal not reachable: {exc}", file=sys.stderr)
        code = 2
    except RPCError as exc:  # e.g. a server without our search attributes
        print(f"kwanus schedules apply: {exc.message}", file=sys.stderr)
        code = 2
    _exit_after_temporal(code)
    return code


def _exit_after_temporal(code: int) -> None:
    """End a short command that used a Temporal client without interpreter finalization: the
    SDK's core runtime threads can crash the process as it tears down (seen here as an abort
    or SIGSEGV roughly one exit in ten), turning a success into a failure exit code."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _audit_verify(args: argparse.Namespace) -> int:
    from store import audit
    from store.db import Database

    db = Database(_settings(args).database_url)
    try:
        with db.session() as session:
            verdict = audit.verify(session)
    finally:
        db.dispose()
    if verdict.intact:
        print(f"audit log intact: {verdict.rows} rows, hash chain unbroken")
        return 0
    print(f"audit log broken at {verdict.first_break}", file=sys.stderr)
    return 1


def _token_create(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from store import repo
    from store.db import Database
    from store.schemas import TokenCreate

    try:
        body = TokenCreate(role=args.role, partner_id=args.partner, label=args.label)
    except ValidationError as exc:
        for err in exc.errors():
            field = ".".join(str(x) for x in err["loc"]) or "token"
            print(f"kwanus token create: {field}: {err['msg']}", file=sys.stderr)
        return 2
    db = Database(_settings(args).database_url)
    try:
        with db.session() as session:
            created = repo.create_token(session=session, token=body)
    except repo.UnknownPartner:
        print(f"kwanus token create: partner {args.partner!r} is not registered", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    print(created.token)
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from store import repo
    from store.db import Database
    from store.tables import utcnow

    db = Database(_settings(args).database_url)
    try:
        with db.session() as session:
            row = repo.revoke_token(session=session, token_id=args.token_id, now=utcnow())
    finally:
        db.dispose()
    if row is None:
        print(f"kwanus token revoke: no token {args.token_id!r}", file=sys.stderr)
        return 2
    print(f"{row.id} revoked")
    return 0


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", type=Path, help="state folder (KWANUS_STATE_DIR)")
    p = argparse.ArgumentParser(prog="kwanus", description="KWANUS Partner Governance")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("dev", parents=[common], help="run the whole product on embedded defaults")
    d.add_argument("--api-port", type=int, help="API port (KWANUS_API_PORT, 8000)")
    d.add_argument("--temporal-port", type=int, help="Temporal port (KWANUS_TEMPORAL_PORT, 7233)")
    d.add_argument("--ui-port", type=int, help="Temporal UI port (KWANUS_UI_PORT, 8233)")
    d.add_argument(
        "--api-metrics-port",
        type=int,
        help="the API's Prometheus endpoint (KWANUS_API_METRICS_PORT, 9464; 0: none)",
    )
    d.add_argument(
        "--worker-metrics-port",
        type=int,
        help="the worker's Prometheus endpoint (KWANUS_WORKER_METRICS_PORT, 9465; 0: none)",
    )
    d.set_defaults(func=_dev)

    sub.add_parser("worker", parents=[common], help="run the Temporal worker").set_defaults(
        func=_worker
    )
    a = sub.add_parser("api", parents=[common], help="run the HTTP API")
    a.add_argument("--api-port", type=int, help="API port (KWANUS_API_PORT, 8000)")
    a.set_defaults(func=_api)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", parents=[common], help="apply migrations").set_defaults(
        func=_db_upgrade
    )

    sch = sub.add_parser("schedules", help="Temporal schedules").add_subparsers(
        dest="schedules", required=True
    )
    sch.add_parser(
        "apply", parents=[common], help="create or update the annual stewardship schedule"
    ).set_defaults(func=_schedules_apply)

    aud = sub.add_parser("audit", help="the audit log").add_subparsers(dest="audit", required=True)
    aud.add_parser(
        "verify", parents=[common], help="check the audit hash chain; name the first break"
    ).set_defaults(func=_audit_verify)

    tok = sub.add_parser("token", help="API tokens").add_subparsers(dest="token", required=True)
    tc = tok.add_parser("create", parents=[common], help="issue a bearer token (printed once)")
    tc.add_argument(
        "--role", required=True, help="partner, TSC, SCO, ERC, CGB, ops, platform or admin"
    )
    tc.add_argument("--partner", help="the partner id (role partner only)")
    tc.add_argument("--label", default="", help="a note on what the token is for")
    tc.set_defaults(func=_token_create)
    tr = tok.add_parser("revoke", parents=[common], help="revoke a token (by its id, tok_…)")
    tr.add_argument("token_id")
    tr.set_defaults(func=_token_revoke)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
