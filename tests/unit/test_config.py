"""Configuration: TOML into the dataclasses, and every validation error naming the file, the dotted
key and the reason."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path

import pytest

from quicproxy.config import (
    AltSvcConfig,
    Config,
    ConfigError,
    ForwardingConfig,
    HeaderRules,
    ListenConfig,
    RouteConfig,
    ServerConfig,
    TlsConfig,
    UpstreamConfig,
    load_config,
    parse_address,
    parse_config,
    parse_upstream_url,
)

SOURCE = "/etc/quicproxy/site.toml"

MINIMAL = """
[[listen]]
address = "127.0.0.1:8443"

[[upstream]]
name = "app"
addresses = ["http://127.0.0.1:8080"]

[[route]]
upstream = "app"
"""


def parse(text: str, base: Path = Path("/etc/quicproxy")) -> Config:
    return parse_config(tomllib.loads(text), SOURCE, base)


def error_of(text: str, base: Path = Path("/etc/quicproxy")) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, base)
    return str(info.value)


# --- a full configuration --------------------------------------------------------------------


def test_full_config_round_trips(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "site.pem").write_text("cert")
    (tmp_path / "certs" / "site.key").write_text("key")
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "internal.pem").write_text("ca")
    text = """
[server]
workers = 4
grace_period = 2.5
log_level = "WARNING"
access_log = false

[tls]
cert = "certs/site.pem"
key = "certs/site.key"
dev_cert_dir = "/var/lib/quicproxy"

[alt_svc]
enabled = false
max_age = 600

[forwarding]
trusted_proxies = ["10.0.0.0/8", "::1", "192.168.1.7/24"]
via = "edge"
x_forwarded = false
forwarded = true

[limits]
idle_timeout = 30
write_timeout = 15.5
max_concurrent_streams = 250
stream_buffer = 65536
max_header_size = 8192

[[listen]]
address = "127.0.0.1:8443"

[[listen]]
address = "[::1]:8443"

[[listen]]
address = ":8080"
tls = false

[[upstream]]
name = "app"
addresses = ["http://127.0.0.1:8080", "127.0.0.1:8081"]
connect_timeout = 1
read_timeout = 30
write_timeout = 20
idle_timeout = 90

[[upstream]]
name = "secure"
addresses = ["https://backend.internal", "https://[::1]:9443"]
sni = "backend.internal"
verify = false
ca_file = "ca/internal.pem"

[[route]]
upstream = "secure"
host = "API.Example.COM"
path_prefix = "/v2/"

[route.request_headers]
set = { "X-Env" = "prod" }
remove = ["Cookie"]

[route.response_headers]
remove = ["Server", "x-powered-by"]

[[route]]
upstream = "app"
"""
    config = parse_config(tomllib.loads(text), "site.toml", tmp_path)
    assert config.source == "site.toml"
    assert config.server == ServerConfig(
        workers=4, grace_period=2.5, log_level="warning", access_log=False
    )
    assert config.tls == TlsConfig(
        cert=tmp_path / "certs" / "site.pem",
        key=tmp_path / "certs" / "site.key",
        dev_cert_dir=Path("/var/lib/quicproxy"),
    )
    assert config.alt_svc == AltSvcConfig(enabled=False, max_age=600)
    assert config.forwarding == ForwardingConfig(
        trusted_proxies=(
            ipaddress.ip_network("10.0.0.0/8"),
            ipaddress.ip_network("::1/128"),
            ipaddress.ip_network("192.168.1.0/24"),
        ),
        via="edge",
        x_forwarded=False,
        forwarded=True,
    )
    limits = config.limits
    assert (limits.idle_timeout, limits.write_timeout) == (30.0, 15.5)
    assert (limits.max_concurrent_streams, limits.stream_buffer) == (250, 65536)
    assert limits.max_header_size == 8192
    assert config.listen == (
        ListenConfig("127.0.0.1", 8443, tls=True, quic=True),
        ListenConfig("::1", 8443, tls=True, quic=True),
        ListenConfig("0.0.0.0", 8080, tls=False, quic=False, h2c=True),
    )
    assert config.upstreams == (
        UpstreamConfig(
            name="app",
            addresses=(("127.0.0.1", 8080), ("127.0.0.1", 8081)),
            tls=False,
            connect_timeout=1.0,
            read_timeout=30.0,
            write_timeout=20.0,
            idle_timeout=90.0,
        ),
        UpstreamConfig(
            name="secure",
            addresses=(("backend.internal", 443), ("::1", 9443)),
            tls=True,
            sni="backend.internal",
            verify=False,
            ca_file=tmp_path / "ca" / "internal.pem",
        ),
    )
    assert config.routes == (
        RouteConfig(
            upstream="secure",
            host="api.example.com",
            path_prefix="/v2/",
            request_headers=HeaderRules(set=(("x-env", "prod"),), remove=("cookie",)),
            response_headers=HeaderRules(remove=("server", "x-powered-by")),
        ),
        RouteConfig(upstream="app"),
    )


def test_minimal_config_has_the_documented_defaults() -> None:
    config = parse(MINIMAL)
    cores = os.cpu_count() or 1
    assert config.server == ServerConfig(workers=cores, grace_period=10.0, log_level="info")
    assert config.tls == TlsConfig()
    assert config.alt_svc == AltSvcConfig(enabled=True, max_age=86400)
    assert config.forwarding == ForwardingConfig(trusted_proxies=(), via="quicproxy")
    assert config.listen == (ListenConfig("127.0.0.1", 8443, tls=True, quic=True),)
    (upstream,) = config.upstreams
    assert upstream.tls is False and upstream.verify is True
    assert (upstream.connect_timeout, upstream.read_timeout) == (5.0, 60.0)
    assert config.routes == (RouteConfig("app", host=None, path_prefix="/"),)


def test_workers_auto_is_the_cpu_count() -> None:
    config = parse('[server]\nworkers = "auto"\n' + MINIMAL)
    assert config.server.workers == (os.cpu_count() or 1)


def test_port_zero_defaults_to_one_worker() -> None:
    config = parse(MINIMAL.replace("127.0.0.1:8443", "127.0.0.1:0"))
    assert config.server.workers == 1
    assert config.listen[0].port == 0


def test_port_zero_with_explicit_workers_is_an_error() -> None:
    message = error_of("[server]\nworkers = 2\n" + MINIMAL.replace(":8443", ":0"))
    assert message == f"{SOURCE}: server.workers: port 0 (any free port) needs workers = 1"


@pytest.mark.parametrize(("value", "expected"), [("true", "quicproxy"), ("false", None)])
def test_via_as_a_boolean(value: str, expected: str | None) -> None:
    assert parse(f"[forwarding]\nvia = {value}\n" + MINIMAL).forwarding.via == expected


def test_upstream_tls_follows_the_scheme_and_can_be_forced() -> None:
    text = MINIMAL.replace('["http://127.0.0.1:8080"]', '["127.0.0.1:8443"]\ntls = true')
    (upstream,) = parse(text).upstreams
    assert upstream.tls is True and upstream.addresses == (("127.0.0.1", 8443),)


def test_expanded_home_path() -> None:
    config = parse('[tls]\ndev_cert_dir = "~/qp-certs"\n' + MINIMAL)
    assert config.tls.dev_cert_dir == Path(os.path.expanduser("~/qp-certs"))


# --- validation: every error names the file, the dotted key and the reason ---------------------

TLS_ONLY_CERT = '[tls]\ncert = "/dev/null"\n'

INVALID = [
    # (TOML text, dotted key, reason)
    pytest.param("server = 3\n" + MINIMAL, "server", "expected a table, got int", id="not-a-table"),
    pytest.param("colour = 1\n" + MINIMAL, "colour", "unknown key", id="unknown-root-key"),
    pytest.param(
        "[server]\nworkerz = 2\n" + MINIMAL, "server.workerz", "unknown key", id="unknown-key"
    ),
    pytest.param(
        "[limits]\nidle = 2\n" + MINIMAL, "limits.idle", "unknown key", id="unknown-limits-key"
    ),
    pytest.param(
        '[server]\ngrace_period = "soon"\n' + MINIMAL,
        "server.grace_period",
        "expected an integer or a number, got str",
        id="number-as-string",
    ),
    pytest.param(
        "[server]\ngrace_period = true\n" + MINIMAL,
        "server.grace_period",
        "got a boolean",
        id="number-as-boolean",
    ),
    pytest.param(
        '[server]\naccess_log = "yes"\n' + MINIMAL,
        "server.access_log",
        "expected a boolean, got str",
        id="boolean-as-string",
    ),
    pytest.param(
        "[server]\nworkers = 0\n" + MINIMAL,
        "server.workers",
        'must be an integer from 1 to 256, or "auto"',
        id="workers-zero",
    ),
    pytest.param(
        "[server]\nworkers = 257\n" + MINIMAL,
        "server.workers",
        "from 1 to 256",
        id="workers-too-many",
    ),
    pytest.param(
        '[server]\nworkers = "many"\n' + MINIMAL,
        "server.workers",
        "from 1 to 256",
        id="workers-word",
    ),
    pytest.param(
        "[server]\nworkers = 2.5\n" + MINIMAL,
        "server.workers",
        "expected an integer or a string, got float",
        id="workers-float",
    ),
    pytest.param(
        '[server]\nlog_level = "verbose"\n' + MINIMAL,
        "server.log_level",
        "must be debug, info, warning or error",
        id="log-level",
    ),
    pytest.param(
        "[server]\ngrace_period = -1\n" + MINIMAL,
        "server.grace_period",
        "must be at least 0",
        id="negative-grace",
    ),
    pytest.param(TLS_ONLY_CERT + MINIMAL, "tls.key", "cert and key go together", id="cert-no-key"),
    pytest.param(
        '[tls]\nkey = "/dev/null"\n' + MINIMAL,
        "tls.cert",
        "cert and key go together",
        id="key-no-cert",
    ),
    pytest.param(
        '[tls]\ncert = "missing.pem"\nkey = "missing.key"\n' + MINIMAL,
        "tls.cert",
        "file not found: /etc/quicproxy/missing.pem",
        id="missing-cert-file",
    ),
    pytest.param(
        "[alt_svc]\nmax_age = -1\n" + MINIMAL, "alt_svc.max_age", "must be between 0", id="max-age"
    ),
    pytest.param(
        '[forwarding]\ntrusted_proxies = ["10.0.0.0/8", "not-a-net"]\n' + MINIMAL,
        "forwarding.trusted_proxies[1]",
        "'not-a-net' does not appear to be an IPv4 or IPv6 network",
        id="trusted-proxy",
    ),
    pytest.param(
        "[forwarding]\ntrusted_proxies = [10]\n" + MINIMAL,
        "forwarding.trusted_proxies[0]",
        "expected a string",
        id="trusted-proxy-type",
    ),
    pytest.param(
        "[limits]\nmax_concurrent_streams = 0\n" + MINIMAL,
        "limits.max_concurrent_streams",
        "must be between 1 and 1000",
        id="streams",
    ),
    pytest.param(
        "[limits]\nstream_buffer = 1024\n" + MINIMAL,
        "limits.stream_buffer",
        "must be between 16384 and",
        id="stream-buffer",
    ),
    pytest.param(
        "[limits]\nidle_timeout = 0.01\n" + MINIMAL,
        "limits.idle_timeout",
        "must be at least 0.1",
        id="idle-timeout",
    ),
    pytest.param(
        MINIMAL.replace('[[listen]]\naddress = "127.0.0.1:8443"\n', ""),
        "listen",
        "needs at least one [[listen]] table",
        id="no-listen",
    ),
    pytest.param(
        '[listen]\naddress = "127.0.0.1:8443"\n' + MINIMAL.split("\n", 3)[3],
        "listen",
        "expected an array of tables ([[listen]])",
        id="listen-not-array",
    ),
    pytest.param(
        MINIMAL.replace('address = "127.0.0.1:8443"', "tls = true"),
        "listen[0].address",
        "is required",
        id="listen-no-address",
    ),
    pytest.param(
        MINIMAL.replace('"127.0.0.1:8443"', '"127.0.0.1"'),
        "listen[0].address",
        "'127.0.0.1' has no port",
        id="listen-no-port",
    ),
    pytest.param(
        MINIMAL.replace('"127.0.0.1:8443"', '"::1:8443"'),
        "listen[0].address",
        "put IPv6 addresses in brackets",
        id="listen-bare-ipv6",
    ),
    pytest.param(
        MINIMAL.replace('"127.0.0.1:8443"', '"127.0.0.1:70000"'),
        "listen[0].address",
        "invalid port",
        id="listen-port-range",
    ),
    pytest.param(
        MINIMAL.replace('"127.0.0.1:8443"', '"127.0.0.1:8443"\ntls = false\nquic = true'),
        "listen[0].quic",
        "QUIC needs TLS",
        id="quic-without-tls",
    ),
    pytest.param(
        MINIMAL.replace('"127.0.0.1:8443"', '"127.0.0.1:8443"\nport = 1'),
        "listen[0].port",
        "unknown key",
        id="listen-unknown-key",
    ),
    pytest.param(
        MINIMAL.replace('name = "app"\n', ""),
        "upstream[0].name",
        "is required",
        id="upstream-no-name",
    ),
    pytest.param(
        MINIMAL.replace('["http://127.0.0.1:8080"]', "[]"),
        "upstream[0].addresses",
        "needs at least one address",
        id="upstream-no-address",
    ),
    pytest.param(
        MINIMAL.replace('["http://127.0.0.1:8080"]', '"http://127.0.0.1:8080"'),
        "upstream[0].addresses",
        "expected an array, got str",
        id="addresses-not-array",
    ),
    pytest.param(
        MINIMAL.replace('["http://127.0.0.1:8080"]', '["http://127.0.0.1:8080", 8081]'),
        "upstream[0].addresses[1]",
        "expected a string",
        id="address-not-string",
    ),
    pytest.param(
        MINIMAL.replace('["http://127.0.0.1:8080"]', '["http://127.0.0.1:8080", "http://h:99999"]'),
        "upstream[0].addresses[1]",
        "'http://h:99999' has an invalid port",
        id="address-bad-port",
    ),
    pytest.param(
        MINIMAL.replace('["http://127.0.0.1:8080"]', '["http://127.0.0.1:8080", "ftp://h:21"]'),
        "upstream[0].addresses[1]",
        "scheme must be http or https",
        id="address-scheme",
    ),
    pytest.param(
        MINIMAL.replace('["http://127.0.0.1:8080"]', '["http://127.0.0.1:8080/app"]'),
        "upstream[0].addresses[0]",
        "upstream URLs take no path or query",
        id="address-path",
    ),
    pytest.param(
        MINIMAL.replace('["http://127.0.0.1:8080"]', '["http://a:1", "https://b:2"]'),
        "upstream[0].addresses",
        "mixes http:// and https://",
        id="mixed-schemes",
    ),
    pytest.param(
        MINIMAL.replace('["http://127.0.0.1:8080"]', '["http://a:1"]\nread_timeout = 0'),
        "upstream[0].read_timeout",
        "must be at least 0.001",
        id="read-timeout",
    ),
    pytest.param(
        MINIMAL.replace('["http://127.0.0.1:8080"]', '["http://a:1"]\nverify = "no"'),
        "upstream[0].verify",
        "expected a boolean, got str",
        id="verify-type",
    ),
    pytest.param(
        MINIMAL + '\n[[upstream]]\nname = "app"\naddresses = ["h:1"]\n',
        "upstream",
        "duplicate name 'app'",
        id="duplicate-upstream",
    ),
    pytest.param(
        MINIMAL.replace('[[route]]\nupstream = "app"\n', ""),
        "route",
        "needs at least one [[route]] table",
        id="no-route",
    ),
    pytest.param(
        MINIMAL.replace('upstream = "app"', 'host = "example.com"'),
        "route[0].upstream",
        "is required",
        id="route-no-upstream",
    ),
    pytest.param(
        MINIMAL + '\n[[route]]\nupstream = "nope"\n',
        "route[1].upstream",
        "no upstream named 'nope' (known: app)",
        id="route-unknown-upstream",
    ),
    pytest.param(
        MINIMAL + '\npath_prefix = "api"\n',
        "route[0].path_prefix",
        "must start with /",
        id="path-prefix",
    ),
    pytest.param(
        MINIMAL + "\n[route.request_headers]\nset = { x-a = 1 }\n",
        "route[0].request_headers.set.x-a",
        "expected a string",
        id="header-value-type",
    ),
    pytest.param(
        MINIMAL + "\n[route.response_headers]\nremove = [1]\n",
        "route[0].response_headers.remove[0]",
        "expected a string",
        id="header-remove-type",
    ),
    pytest.param(
        MINIMAL + '\n[route.response_headers]\nadd = { a = "b" }\n',
        "route[0].response_headers.add",
        "unknown key",
        id="header-rules-unknown-key",
    ),
    pytest.param(
        MINIMAL + "\nrequest_headers = 5\n",
        "route[0].request_headers",
        "expected a table, got int",
        id="header-rules-not-table",
    ),
]


@pytest.mark.parametrize(("text", "key", "reason"), INVALID)
def test_validation_error_names_file_key_and_reason(text: str, key: str, reason: str) -> None:
    message = error_of(text)
    assert message.startswith(f"{SOURCE}: {key}: "), message
    assert reason in message, message


def test_cert_and_key_that_exist_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    config = parse('[tls]\ncert = "c.pem"\nkey = "k.pem"\n' + MINIMAL, tmp_path)
    assert (config.tls.cert, config.tls.key) == (tmp_path / "c.pem", tmp_path / "k.pem")


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    message = error_of('[tls]\ncert = "c.pem"\nkey = "k.pem"\n' + MINIMAL, tmp_path)
    assert message == f"{SOURCE}: tls.key: file not found: {tmp_path / 'k.pem'}"


# --- load_config -----------------------------------------------------------------------------


def test_load_config_resolves_paths_next_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "site.pem").write_text("x")
    (tmp_path / "site.key").write_text("x")
    path = tmp_path / "proxy.toml"
    path.write_text('[tls]\ncert = "site.pem"\nkey = "site.key"\n' + MINIMAL)
    config = load_config(path)
    assert config.source == str(path)
    assert config.tls.cert == tmp_path / "site.pem"


def test_load_config_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(MINIMAL.replace('"127.0.0.1:8443"', '"127.0.0.1:x"'))
    with pytest.raises(ConfigError, match=r"listen\[0\]\.address: '127\.0\.0\.1:x' has an invalid"):
        load_config(path)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: listen[0].address: ")


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: file not found"


def test_load_config_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(MINIMAL + "\n[limits\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line" in message  # tomllib says where


# --- parse_address ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8443", ("127.0.0.1", 8443)),
        ("[::1]:443", ("::1", 443)),
        ("[::]:0", ("::", 0)),
        (":8443", ("0.0.0.0", 8443)),
        ("localhost:80", ("localhost", 80)),
        ("example.com:65535", ("example.com", 65535)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


def test_parse_address_default_host() -> None:
    assert parse_address(":9000", default_host="") == ("", 9000)
    assert parse_address(":9000", default_host="127.0.0.1") == ("127.0.0.1", 9000)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("127.0.0.1", "has no port"),
        ("", "has no port"),
        ("::1:443", "put IPv6 addresses in brackets"),
        ("host:", "invalid port"),
        ("host:65536", "invalid port"),
        ("host:-1", "invalid port"),
        ("host:+5", "invalid port"),
        ("host: 80", "invalid port"),
        ("host:http", "invalid port"),
        ("[::1]", r"\[::1\]"),  # no port: the message names the text
    ],
)
def test_parse_address_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_address(text)


# --- parse_upstream_url ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://127.0.0.1:8080", ("127.0.0.1", 8080, False)),
        ("http://127.0.0.1:8080/", ("127.0.0.1", 8080, False)),
        ("https://example.com", ("example.com", 443, True)),
        ("http://example.com", ("example.com", 80, False)),
        ("https://[::1]:8443", ("::1", 8443, True)),
        ("HTTPS://Backend.Example", ("backend.example", 443, True)),
        ("127.0.0.1:9000", ("127.0.0.1", 9000, False)),
        (":9000", ("127.0.0.1", 9000, False)),
        ("[::1]:9000", ("::1", 9000, False)),
    ],
)
def test_parse_upstream_url(text: str, expected: tuple[str, int, bool]) -> None:
    assert parse_upstream_url(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("http://h:99999", "invalid port"),
        ("http://h:abc", "invalid port"),
        ("http://h:-1", "invalid port"),
        ("http://h/app", "take no path or query"),
        ("http://h:80/app/", "take no path or query"),
        ("http://h?x=1", "take no path or query"),
        ("ftp://h:21", "scheme must be http or https"),
        ("ws://h:80", "scheme must be http or https"),
        ("http://", "has no host"),
        ("https://:443", "has no host"),
        ("backend", "has no port"),
        ("backend:http", "invalid port"),
    ],
)
def test_parse_upstream_url_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_upstream_url(text)


@pytest.mark.parametrize("text", ["http://h:0", "https://h:0", "127.0.0.1:0"])
def test_upstream_port_zero_is_rejected(text: str) -> None:
    """Nothing listens on port 0: an upstream there is a mistake, not a request for port 80/443
    (``parts.port or default`` turns an explicit 0 into the scheme's default port)."""
    with pytest.raises(ValueError, match="invalid port"):
        parse_upstream_url(text)


def test_cookie_hash_key_name_is_case_sensitive() -> None:
    from quicproxy.config import parse_config

    config = parse_config(
        {
            "listen": [{"address": "127.0.0.1:0"}],
            "upstream": [
                {"name": "a", "addresses": ["127.0.0.1:1"], "lb": "ketama",
                 "hash_key": "cookie:SessionId"},
            ],
            "route": [{"upstream": "a"}],
        },
        "t.toml",
        Path("."),
    )  # fmt: skip
    assert config.upstreams[0].hash_key == "cookie:SessionId"


def test_quic_table() -> None:
    config = parse(
        MINIMAL
        + """
[quic]
retry = "auto"
retry_threshold = 50
new_token = false
token_lifetime = 3600
early_data_unsafe = "hold"
preferred_address = ["192.0.2.1:8444", "[2001:db8::1]:8444"]
max_connections = 500
qpack_max_table_capacity = 0
qpack_blocked_streams = 0
ecn = true
"""
    )
    quic = config.quic
    assert (quic.retry, quic.retry_threshold, quic.new_token) == ("auto", 50, False)
    assert quic.token_lifetime == 3600.0 and quic.early_data_unsafe == "hold"
    assert quic.preferred_address == (("192.0.2.1", 8444), ("2001:db8::1", 8444))
    assert (quic.max_connections, quic.qpack_max_table_capacity) == (500, 0)
    assert quic.qpack_blocked_streams == 0 and quic.ecn is True
    assert parse(MINIMAL + "\n[quic]\nretry = true\n").quic.retry == "always"
    assert parse(MINIMAL + "\n[quic]\nretry = false\n").quic.retry == "off"
    assert parse(MINIMAL).quic.retry == "auto"


@pytest.mark.parametrize(
    ("table", "key", "reason"),
    [
        ('retry = "sometimes"', "quic.retry", 'must be true, false, "off", "always" or "auto"'),
        ('early_data_unsafe = "queue"', "quic.early_data_unsafe", '"reject" (425 Too Early)'),
        ('preferred_address = "example.com:443"', "quic.preferred_address", "is not IP:port"),
        ('preferred_address = "0.0.0.0:443"', "quic.preferred_address", "a concrete address"),
        (
            'preferred_address = ["192.0.2.1:1", "192.0.2.2:1"]',
            "quic.preferred_address",
            "at most one IPv4 and one IPv6",
        ),
        ("max_connections = 0", "quic.max_connections", "must be between 1"),
        ("ecn = 1", "quic.ecn", "expected"),
        ("nonsense = 1", "quic.nonsense", "unknown key"),
    ],
)
def test_quic_table_errors_name_the_key(table: str, key: str, reason: str) -> None:
    message = error_of(MINIMAL + f"\n[quic]\n{table}\n")
    assert message.startswith(f"{SOURCE}: {key}: "), message
    assert reason in message, message


def test_h2c_is_on_for_cleartext_listeners_and_refused_on_tls_ones() -> None:
    body = MINIMAL.split("[[upstream]]", 1)[1]
    cleartext = parse('[[listen]]\naddress = ":8080"\ntls = false\n[[upstream]]' + body)
    assert cleartext.listen[0].h2c
    off = parse('[[listen]]\naddress = ":8080"\ntls = false\nh2c = false\n[[upstream]]' + body)
    assert not off.listen[0].h2c
    message = error_of('[[listen]]\naddress = ":8443"\nh2c = true\n[[upstream]]' + body)
    assert "listen[0].h2c: is for cleartext listeners" in message
