"""One typed settings object for every process of the system.

Like Datasette's settings table: each setting is a field with a default and a help text
(`field(metadata={"help": ...})`), and `docs/operator-guide.md` documents every one of them
(a test checks that). `settings_load.load_settings` makes one: values come, lowest priority
first, from the defaults, an optional TOML file (`STCLOUD_CONFIG`, else
`<data_dir>/config.toml`), and environment variables named `STCLOUD_<NAME>` (plus
`DATABASE_URL` for `database_url`).

The supervisor passes the effective environment on to the dashboard process, so the two
always agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "STCLOUD_"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SECRET_SETTINGS = frozenset({"database_url", "smtp_password", "github_client_secret"})


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _help("Where the database, checkouts, logs and keys live.",
                           default=PROJECT_ROOT / ".data")
    database_url: str = _help("SQLAlchemy URL; empty means SQLite (WAL) in data_dir. "
                              "Also read from DATABASE_URL.", default="")
    domain: str = _help("Public domain: the dashboard is served at it, apps at "
                        "<subdomain>.<domain>.", default="localhost")
    port: int = _help("The one public port of the proxy.", default=8080)
    bind: str = _help("Address the proxy listens on.", default="127.0.0.1")
    scheme: str = _help("http or https, as browsers see the public URL (TLS is "
                        "terminated in front of the proxy).", default="http")
    public_port: int = _help("Port browsers use in public URLs; 0 means `port` "
                             "(set 443/80 behind a TLS terminator).", default=0)
    runtime: str = _help("auto, docker, swarm or process. auto uses Docker when a daemon "
                         "answers, else the process runtime; swarm (Docker Swarm "
                         "services) is used only when asked for.", default="auto")
    memory_limit_mb: int = _help("Default memory limit per app, in MiB.", default=1024)
    default_python: str = _help("Python version for apps that do not choose one.",
                                default="3.11")
    python_search_paths: str = _help(
        "Extra places the process runtime looks for Python interpreters, separated by ':' "
        "(each a directory holding python3.N, an interpreter prefix with bin/python3.N, or a "
        "directory of prefixes such as pyenv's versions directory); uv's discovery, "
        "$PYENV_ROOT/versions (else ~/.pyenv/versions), /usr/local/bin and /usr/bin are "
        "always searched.", default="")
    default_streamlit: str = _help("Streamlit version installed when an app does not pin "
                                   "one.", default="1.67.0")
    app_auth_packages: str = _help(
        "Packages installed into every app environment that lacks Authlib, so st.login() "
        "works with the platform's accounts (separated by spaces; empty: none).",
        default="Authlib==1.9.6 httpx==0.28.1")
    oidc_internal_url: str = _help(
        "Base URL at which hosted apps' processes reach the platform for st.login()'s "
        "server-side calls (discovery, token, keys); empty means the public URL. Set it "
        "when apps cannot reach the public URL (the domain localhost with sandboxed apps).",
        default="")
    envs_dir: Path | None = _help("Where built environments are kept; default "
                                  "<data_dir>/envs. Shared by apps with the same "
                                  "dependency hash.", default=None)
    uv_cache_dir: Path | None = _help("uv's package cache; default <data_dir>/uv-cache.",
                                      default=None)
    env_sharing: str = _help("Who shares a built environment and the package cache its "
                             "build used: installation (every app with the same "
                             "dependencies) or workspace (only apps of one workspace: "
                             "package build code run by one workspace's deploy cannot reach "
                             "another workspace's environments; slower first builds).",
                             default="installation")
    index_url: str = _help("Package index URL for builds; empty means uv's default.",
                           default="")
    ca_bundle: str = _help("CA bundle for builds that reach the package index; empty "
                           "means the host's /etc/ssl/certs/ca-certificates.crt when it "
                           "exists.", default="")
    allow_local_repos: bool = _help("Allow deploying from local paths and file:// URLs, "
                                    "and from hosts on this machine or a private network "
                                    "(loopback, link-local, private addresses); off: only "
                                    "public hosts, checked when git fetches.", default=True)
    reconcile_interval: float = _help("Seconds between reconcile passes (deploys also wake "
                                      "the loop at once).", default=1.0)
    health_timeout: float = _help("Seconds an app may take from start to answering "
                                  "/_stcore/health.", default=120.0)
    build_timeout: float = _help("Seconds a clone or environment build may take.",
                                 default=900.0)
    crash_backoff: str = _help("Seconds to wait before each restart of a crashed app, "
                               "comma-separated; past the end the app stays crashed.",
                               default="1,2,5,10,30")
    dashboard_port: int = _help("Internal port of the dashboard Streamlit process; 0 "
                                "picks a free one.", default=0)
    admin_username: str = _help("Username of the first admin, created on first start.",
                                default="admin")
    docs_url: str = _help("Documentation link shown in the dashboard.",
                          default="https://docs.streamlit.io/deploy/streamlit-community-cloud")
    support_url: str = _help("Support link shown in the dashboard.", default="")
    log_level: str = _help("Operator log level.", default="INFO")
    smtp_password: str = _help("SMTP password (used by the email sender).", default="")
    # GitHub ---
    github_base_url: str = _help("GitHub's API URL; for GitHub Enterprise Server "
                                 "https://HOST/api/v3.", default="https://api.github.com")
    github_client_id: str = _help("Client id of a GitHub OAuth app; with the secret, users "
                                  "connect by signing in instead of pasting a token. Callback "
                                  "URL: <public URL>/api/v1/github/callback.", default="")
    github_client_secret: str = _help("Client secret of that GitHub OAuth app.", default="")
    github_refresh_minutes: float = _help("Minutes between refreshes of each user's "
                                          "workspaces, roles and deployed repositories from "
                                          "GitHub; also how long sign-in reuses the last "
                                          "refresh.", default=30.0)

    # Analytics ---
    analytics_retention_days: int = _help("Days of view events kept for analytics; 0 keeps "
                                          "them forever.", default=0)
    usage_sample_interval: float = _help("Seconds between samples of each running app's "
                                         "memory and CPU use (the Memory usage chart); 0 "
                                         "turns sampling off.", default=60.0)
    usage_retention_days: float = _help("Days of memory and CPU samples kept; older ones "
                                        "are deleted once a day; 0 keeps them forever.",
                                        default=14.0)
    memory_warning_percent: float = _help("Share of its memory limit, in percent, that an "
                                          "app may stay above for memory_warning_minutes "
                                          "before its developers are warned (a dashboard "
                                          "notice and an email); 0 turns the warning off.",
                                          default=80.0)
    memory_warning_minutes: float = _help("Minutes an app's memory must stay above "
                                          "memory_warning_percent of its limit (every sample "
                                          "in that time) before the warning.", default=5.0)

    # Lifecycle ---
    git_poll_interval: float = _help("Seconds between checks of every app's branch with "
                                     "`git ls-remote` (works with any git host, no webhook "
                                     "needed); each check is jittered by up to 10%. 0 turns "
                                     "polling off.", default=60.0)
    git_poll_concurrency: int = _help("Most `git ls-remote` checks running at once.",
                                      default=4)
    start_concurrency: int = _help("Most apps starting at once from their existing checkout "
                                   "and environment (after a platform restart, or waking "
                                   "up); the others wait their turn. 0 means the number of "
                                   "CPU cores.", default=0)
    redeploy_drain: float = _help("Seconds the old instance keeps serving requests already "
                                  "sent to it after a zero-downtime redeploy switched the "
                                  "route, before it is stopped.", default=2.0)
    crash_window: float = _help("Seconds over which crashes are counted: more crashes in "
                                "this window than `crash_backoff` has entries leave the app "
                                "`crashed`.", default=600.0)
    process_memory_limit: str = _help("How the process runtime enforces memory limits: "
                                      "cgroup (cgroup v1 memory controller, needs root), "
                                      "watchdog (kills a process tree whose RSS passes the "
                                      "limit, checked every reconcile pass), auto (cgroup "
                                      "when possible, else watchdog) or off.", default="auto")
    process_sandbox: str = _help("How the process runtime isolates apps and their builds: "
                                 "bubblewrap (each in its own namespaces as its own "
                                 "unprivileged user, seeing only its checkout, environment "
                                 "and secrets; needs bwrap and slirp4netns), auto (bubblewrap; "
                                 "when this host cannot, apps are refused and the log says "
                                 "what to install) or off (single-tenant: apps run as the "
                                 "supervisor's user and can read everything it can).",
                                 default="auto")
    process_rootfs_dir: Path | None = _help(
        "Where the process runtime keeps its Debian root filesystems (one per Python "
        "version: bullseye 3.9, bookworm 3.11, trixie 3.13), made with debootstrap the first "
        "time an app with packages.txt needs one; default <data_dir>/rootfs.", default=None)
    process_pids_limit: int = _help("Most processes and threads per app instance and build "
                                    "step under the process runtime (pids cgroup, and "
                                    "RLIMIT_NPROC of the sandbox's user); 0 means no limit.",
                                    default=512)
    warm_pool_memory_mb: int = _help("Memory budget, in MiB, of the process runtime's warm "
                                     "pool: for the environments of sleeping apps, a "
                                     "sandboxed interpreter that has already imported "
                                     "Streamlit and the heavy libraries waits to become the "
                                     "next woken app's instance (about 150 MiB each; most "
                                     "sleeping apps first). Needs the supervisor as root "
                                     "with the bubblewrap sandbox; 0 means off (every wake "
                                     "is a cold start).", default=0)
    app_log_max_bytes: int = _help("Size at which an app's log file (`app.log`) is rotated "
                                   "to `app.log.1`; 0 means never rotate. An app's logs on "
                                   "disk stay under app_log_max_bytes × (app_log_backups + "
                                   "1).", default=10 * 1024 * 1024)
    app_log_backups: int = _help("Rotated log files kept per app (`app.log.1` … "
                                 "`app.log.N`); the oldest is dropped.", default=3)
    app_workdir_size_mb: int = _help("Size of an app instance's writable working directory "
                                     "(/app: a tmpfs that starts as a copy of the checkout and "
                                     "is lost at every reboot), in MiB, on every runtime. It "
                                     "holds the repository's files too and counts in the app's "
                                     "memory limit; writing past it fails with \"No space "
                                     "left on device\".", default=512)
    hibernate_after_days: float = _help("Days without a view after which a public app goes "
                                        "to sleep; 0 means never.", default=7.0)
    hibernate_warn_after_days: float = _help("Days without a view after which developers get "
                                             "an email that the app will go to sleep.",
                                             default=5.0)
    hibernate_private_apps: bool = _help("Let private apps sleep too (Community Cloud never "
                                         "puts private apps to sleep).", default=False)
    hibernation_interval: float = _help("Seconds between checks for apps to warn or put to "
                                        "sleep.", default=300.0)
    # Per-app sleep policies (docs/operator-guide.md, "Sleep policies") ---
    sleep_default_policy: str = _help(
        "Sleep policy of apps whose developers keep 'default', written as the CLI writes "
        "one: empty means Community Cloud's (hibernate_after_days without a view, public "
        "apps only unless hibernate_private_apps); else e.g. 'idle 12h', 'never' or "
        "'schedule mon-fri 08:00-18:00 Europe/Berlin'.", default="")
    sleep_min_idle_minutes: float = _help(
        "Shortest idle period developers may choose for an 'idle' policy, in minutes; "
        "shorter ones are refused with this bound in the message.", default=5.0)
    sleep_never_allowed: bool = _help("Whether developers may choose 'never' (always on) "
                                      "for their apps.", default=True)
    sleep_never_max_per_workspace: int = _help(
        "Most apps per workspace whose policy is 'never'; 0 means no cap. Lowering it "
        "leaves existing ones as they are and refuses new ones.", default=0)
    smtp_host: str = _help("SMTP server for emails to developers; empty means emails stay "
                           "in the outbox (admins see them in the dashboard).", default="")
    smtp_port: int = _help("SMTP port; 0 means 587 for starttls, 465 for ssl, 25 for none.",
                           default=0)
    smtp_tls: str = _help("starttls, ssl (implicit TLS) or none.", default="starttls")
    smtp_user: str = _help("SMTP user name; empty means no login.", default="")
    smtp_from: str = _help("Sender address of emails; empty means noreply@<domain>.",
                           default="")
    email_interval: float = _help("Seconds between passes of the email sender over the "
                                  "outbox.", default=10.0)
    email_max_attempts: int = _help("Attempts to send one email before it is marked failed "
                                    "(retries back off: 30 s, 1 min, 2 min, ... up to 1 h).",
                                    default=8)
    # Proxy connection limits (docs/security.md, "Connection limits") ---
    proxy_header_timeout: float = _help("Seconds a client has to send a request's headers, "
                                        "from the connection's start or the request's "
                                        "first byte; then the proxy closes the "
                                        "connection.", default=15.0)
    proxy_body_timeout: float = _help("Seconds a request body may go without a byte "
                                      "arriving while the proxy reads it; then the "
                                      "connection is closed.", default=30.0)
    proxy_keepalive_timeout: float = _help("Seconds an idle keep-alive connection may wait "
                                           "for its next request.", default=60.0)
    proxy_max_connections_per_client: int = _help(
        "Most open connections (websockets included) from one client address; more are "
        "answered 503 and closed. Raise it when many users share one address (NAT).",
        default=256)
    proxy_max_connections: int = _help("Most open client connections in all; 0 means "
                                       "derived from the open-file limit ((soft limit - "
                                       "512) / 2); a bigger value is lowered to that.",
                                       default=0)
    proxy_trusted_proxies: str = _help("Comma-separated addresses or networks of proxies in "
                                       "front of ours (a TLS terminator): their connections "
                                       "count only towards proxy_max_connections, not per "
                                       "client.", default="")
    proxy_websocket_ping_interval: float = _help(
        "Seconds of quiet after which the proxy pings a client's websocket; one that sends "
        "no pong within half of it is closed. 0 means never.", default=30.0)
    # Several supervisors and proxies (docs/scale-out.md) ---
    node_id: str = _help("Name of this supervisor or proxy in the cluster tables; empty "
                         "means <hostname>-<pid>.", default="")
    lease_seconds: float = _help("Seconds the leader's lease lasts unless renewed (every "
                                 "third of it). Another supervisor takes over when it "
                                 "expires, or at once when the leader's process is gone "
                                 "(same host, or its PostgreSQL session ended).",
                                 default=15.0)
    route_poll_interval: float = _help("Seconds between reloads of the route table from "
                                       "the database by a standalone proxy (`python -m "
                                       "supervisor proxy`; supervisors that do not lead "
                                       "reload theirs every reconcile pass); keep it below "
                                       "`redeploy_drain`.", default=1.0)
    # Docker runtime ---
    docker_base_images: str = _help("Base image per Python version for the Docker runtime, "
                                    "comma-separated VERSION=IMAGE (e.g. "
                                    "\"3.11=myreg/py:3.11\"); versions not named use "
                                    "stcloud-base:pyVERSION, built locally on first use: "
                                    "Debian's python3 (debootstrap) for 3.9, 3.11 and 3.13, "
                                    "a CPython found on this host (as for the process "
                                    "runtime) for the others.", default="")
    docker_network: str = _help("Docker network app containers join; created as a bridge "
                                "with inter-container traffic disabled when missing. "
                                "Empty means Docker's default bridge.", default="stcloud-apps")
    docker_cpus: float = _help("CPU limit per app container, in CPUs; 0 means no limit.",
                               default=1.0)
    docker_pids_limit: int = _help("Most processes and threads per app container; 0 means "
                                   "no limit.", default=512)
    # Swarm runtime (docs/docker.md, "Swarm"); it also uses the Docker settings above ---
    swarm_replicas: int = _help("Tasks per app service under the swarm runtime; more than "
                                "1 needs a proxy with sticky sessions (a Streamlit session "
                                "lives in one process).", default=1)
    swarm_placement_constraints: str = _help("Extra Swarm placement constraints for app "
                                             "services, comma-separated (e.g. "
                                             "\"node.labels.apps==true\").", default="")
    swarm_registry: str = _help("Registry (host[:port]/path) env images are pushed to so "
                                "that every swarm node can pull them; empty means the "
                                "local image, on a single node.", default="")
    swarm_network: str = _help("Swarm-scoped network app services join. When missing it is "
                               "created as a bridge with inter-container traffic disabled, "
                               "and tasks are placed on the supervisor's node, whose proxy "
                               "reaches them at their bridge address.",
                               default="stcloud-swarm-apps")
    swarm_memory_reservation: float = _help("Share of an app's memory limit that Swarm "
                                            "reserves for its task when placing it; 0 "
                                            "reserves nothing.", default=0.1)

    # Derived locations -------------------------------------------------------------
    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'cloud.db'}"

    @property
    def envs_path(self) -> Path:
        return self.envs_dir or self.data_dir / "envs"

    @property
    def uv_cache_path(self) -> Path:
        return self.uv_cache_dir or self.data_dir / "uv-cache"

    def uv_cache_for(self, scope: str) -> Path:
        """The package cache of builds in `scope` (EnvSpec.scope): the shared one, or one
        of its own under `scopes/`."""
        return self.uv_cache_path / "scopes" / scope if scope else self.uv_cache_path

    @property
    def rootfs_path(self) -> Path:
        return self.process_rootfs_dir or self.data_dir / "rootfs"

    @property
    def apps_path(self) -> Path:
        return self.data_dir / "apps"

    @property
    def logs_path(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_path(self) -> Path:
        return self.data_dir / "run"

    @property
    def ca_bundle_path(self) -> Path | None:
        if self.ca_bundle:
            return Path(self.ca_bundle)
        host = Path("/etc/ssl/certs/ca-certificates.crt")
        return host if host.exists() else None

    @property
    def crash_backoff_schedule(self) -> tuple[float, ...]:
        return tuple(float(s) for s in self.crash_backoff.split(",") if s.strip())

    def public_url(self, subdomain: str | None = None) -> str:
        host = f"{subdomain}.{self.domain}" if subdomain else self.domain
        port = self.public_port or self.port
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{host}" + ("" if port == default else f":{port}")

    def masked(self) -> dict[str, str]:
        """Every setting as text, secrets replaced by `***` (for the start-up banner)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_SETTINGS and value:
                value = _mask_url(value) if f.name == "database_url" else "***"
            out[f.name] = str(value)
        return out

    def to_env(self) -> dict[str, str]:
        """Environment variables that reproduce these settings in a child process."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                env[ENV_PREFIX + f.name.upper()] = str(value)
        return env


def _mask_url(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
