"""`werss-child`: run | sync | check | status | wechat login|status.

Exit codes: 0 clean stop, 1 parent unreachable (check, sync) or a crash, 2 bad
configuration (including a parent URL that is not a WeRSS parent), 3 credentials
rejected or node disabled.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from shared import jsonlog

EXIT_OK, EXIT_UNREACHABLE, EXIT_CONFIG, EXIT_REFUSED = 0, 1, 2, 3


def _config(args):
    from .config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"werss-child: configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    if not config.enabled:
        print("werss-child: cascade is disabled (CASCADE_ENABLED / cascade.enabled is false)",
              file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    return config


def cmd_run(args) -> int:
    from .agent import Agent, FatalError, WrongParentError
    from .health import serve_health

    config = _config(args)
    agent = Agent(config)
    signals = {"count": 0}

    def on_signal(signum, _frame):
        signals["count"] += 1
        if signals["count"] == 1:
            agent.begin_drain()
        else:
            logging.getLogger("werss.child").warning("second signal: exiting now")
            os._exit(1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if _STOP_REQUESTED:
        agent.begin_drain()  # the signal came while the agent was being built
    try:
        server = serve_health(agent, config.health_listen) if config.health_listen else None
    except OSError as exc:
        print(f"werss-child: configuration error: CASCADE_HEALTH_LISTEN "
              f"({config.health_listen}): {exc.strerror}", file=sys.stderr)
        agent.close()
        return EXIT_CONFIG
    logging.getLogger("werss.child").info(
        "werss-child starting: parent %s, auth %s, capacity %d, data %s",
        config.parent_api_url, config.auth_mode, config.capacity, config.data_dir)
    try:
        agent.run()
    except WrongParentError as exc:
        print(f"werss-child: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except FatalError as exc:
        print(f"werss-child: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        if server:
            server.shutdown()
        agent.close()
    return EXIT_OK


def cmd_sync(args) -> int:
    from . import errors
    from .agent import Agent, explain_fatal

    agent = Agent(_config(args))
    try:
        summary = agent.sync_once(full=True)
    except (errors.AuthenticationError, errors.PermissionDeniedError) as exc:
        print(f"werss-child: {explain_fatal(exc)}", file=sys.stderr)
        return EXIT_REFUSED
    except errors.ParentError as exc:
        print(f"werss-child: sync failed: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        agent.close()
    print(f"synced: {summary['cached_feeds']} feeds, {summary['cached_tasks']} tasks")
    return EXIT_OK


def cmd_check(args) -> int:
    import requests

    from . import errors
    from .agent import explain_fatal
    from .client import ParentClient, RetryPolicy
    from .config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config: FAIL {exc}")
        return EXIT_CONFIG
    print(f"config: ok ({config.source}; parent {config.parent_api_url}, auth {config.auth_mode})")
    try:
        response = requests.get(config.parent_api_url + "/healthz", timeout=10,
                                verify=config.ca_bundle or True, allow_redirects=False)
        print(f"reachability: ok (HTTP {response.status_code})" if response.ok
              else f"reachability: FAIL HTTP {response.status_code}")
        if not response.ok:
            return EXIT_UNREACHABLE
    except requests.RequestException as exc:
        print(f"reachability: FAIL {type(exc).__name__}: cannot reach {config.parent_api_url}")
        return EXIT_UNREACHABLE
    try:
        who = ParentClient(config).whoami(retry=RetryPolicy(max_attempts=1))
    except (errors.AuthenticationError, errors.PermissionDeniedError) as exc:
        print(f"credentials: FAIL {explain_fatal(exc)}")
        return EXIT_REFUSED
    except errors.ParentError as exc:
        print(f"credentials: FAIL {exc}")
        return EXIT_UNREACHABLE
    print(f"credentials: ok (node {who['name']} {who['node_id']})")
    return EXIT_OK


def cmd_status(args) -> int:
    from .cache import LocalCache

    config = _config(args)
    cache = LocalCache(config.data_dir)
    try:
        depth = cache.outbox_depth()
        print(f"parent: {config.parent_api_url}")
        print(f"last contact: {cache.get_meta('last_contact') or 'never'}")
        print(f"cached: {cache.count('feeds')} feeds, {cache.count('tasks')} tasks")
        print(f"outbox: {depth.get('pending', 0)} pending, {depth.get('rejected', 0)} rejected")
        print(f"leases held: {len(cache.held_leases())}")
        from .wechat.manager import WechatManager

        wechat = WechatManager(config, cache).capability()
        print(f"wechat: {'valid' if wechat['session_valid'] else 'no valid session'}"
              + (f" ({wechat['account']['name']}, until {wechat['expires_at']})"
                 if wechat["session_valid"] and wechat["account"] else ""))
    finally:
        cache.close()
    return EXIT_OK


_STOP_REQUESTED = False


def _stop_during_start_up(signum, _frame):
    """SIGTERM before the agent's own handler is in place: stop cleanly once it is."""
    global _STOP_REQUESTED
    _STOP_REQUESTED = True


COMMANDS = (
    ("run", cmd_run, "run the agent until stopped",
     "Run the agent: heartbeat, sync feeds and tasks, claim work, collect, push, report. "
     "The first SIGTERM or Ctrl-C stops it: no new work, leases in hand are finished or "
     "handed back; a second one exits at once."),
    ("sync", cmd_sync, "one full sync now: heartbeat, feeds, tasks",
     "One full sync now, as the seed guide's manual sync: a heartbeat, then every feed and "
     "message task pulled into the local cache. Exit 1 if the parent cannot be reached."),
    ("check", cmd_check, "check configuration, reachability and credentials",
     "Check the configuration, that the parent answers, and that it accepts the "
     "credentials; one line each, non-zero exit on the first failure."),
    ("status", cmd_status, "show the local state: last contact, outbox, leases",
     "Show the local state from the cache: last contact with the parent, cached feeds and "
     "tasks, results waiting in the outbox, leases held. Does not contact the parent."),
)


def cmd_wechat(args) -> int:
    from .cache import LocalCache
    from .wechat import cli

    config = _config(args)
    cache = LocalCache(config.data_dir)
    try:
        if args.wechat_command == "login":
            return cli.login(config, cache, qr_file=args.qr)
        return cli.status(config, cache)
    finally:
        cache.close()


def main(argv=None) -> None:
    from . import __version__

    # Until `run` installs the agent's handler, a SIGTERM is remembered rather than fatal.
    signal.signal(signal.SIGTERM, _stop_during_start_up)
    parser = argparse.ArgumentParser(prog="werss-child", description=__doc__.splitlines()[0],
                                     epilog="Exit codes: 0 clean stop, 1 parent unreachable "
                                            "or a crash, 2 bad configuration, 3 credentials "
                                            "rejected or node disabled.")
    parser.add_argument("--version", action="version", version=f"werss-child {__version__}")
    parser.add_argument("--config", metavar="FILE",
                        help="YAML file with a cascade: section "
                             "(default: $CASCADE_CONFIG or ./config.yaml)")
    parser.add_argument("--log-level", metavar="LEVEL",
                        default=os.environ.get("CASCADE_LOG_LEVEL", "INFO"),
                        help="DEBUG, INFO, WARNING or ERROR (default: $CASCADE_LOG_LEVEL "
                             "or INFO)")
    parser.add_argument("--log-format", choices=jsonlog.FORMATS,
                        default=os.environ.get("CASCADE_LOG_FORMAT", "text").strip().lower(),
                        help="text, or json: one JSON object a line with node_id and lease_id "
                             "fields (default: $CASCADE_LOG_FORMAT or text)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, handler, text, description in COMMANDS:
        sub = commands.add_parser(name, help=text, description=description)
        sub.add_argument("--config", dest="config_sub", metavar="FILE",
                         help="same as werss-child --config FILE")
        sub.set_defaults(handler=handler)
    wechat = commands.add_parser("wechat", help="log this child in to WeChat, or show its session")
    wechat.add_argument("--config", dest="config_sub", metavar="FILE",
                        help="same as werss-child --config FILE")
    wechat.add_argument("wechat_command", choices=("login", "status"))
    wechat.add_argument("--qr", help="where to save the QR image (default: DATA_DIR/"
                                     "wechat-login-qr.png)")
    wechat.set_defaults(handler=cmd_wechat)
    args = parser.parse_args(argv)
    if args.handler is not cmd_run:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # one-shot commands just end
        if _STOP_REQUESTED:
            sys.exit(EXIT_OK)
    args.config = getattr(args, "config_sub", None) or args.config
    if args.log_format not in jsonlog.FORMATS:
        parser.error(f"CASCADE_LOG_FORMAT: expected text or json, got {args.log_format!r}")
    jsonlog.configure(args.log_format, args.log_level.upper())
    # urllib3's debug lines carry request paths and queries, where webhook tokens live.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, logging.getLogger().level))
    sys.exit(args.handler(args))


if __name__ == "__main__":
    main()
