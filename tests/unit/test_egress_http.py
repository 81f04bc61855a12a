"""HTTP/1.x as the egress proxy reads and writes it (nucleus.effects.egress_http): request and
response heads, targets, body framing, the heads forwarded each way; fuzzed with Hypothesis so
that any bytes give either a head or a BadMessage, and a forwarded head is what was read."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nucleus.effects import egress_http as http
from nucleus.effects.egress_http import BadMessage


def request(text: str) -> http.Head:
    return http.parse_request(text.replace("\n", "\r\n").encode())


def refused(text: str | bytes, status: int, why: str) -> None:
    data = text if isinstance(text, bytes) else text.replace("\n", "\r\n").encode()
    with pytest.raises(BadMessage) as e:
        http.parse_request(data)
    assert (e.value.status, e.value.why) == (status, why)


def test_an_absolute_form_request_is_forwarded_in_origin_form():
    head = request("GET http://Pkgs.Test:8080/simple/x/?a=1#top HTTP/1.1\nHost: pkgs.test:8080\n"
                   "User-Agent: pip\nConnection: keep-alive, X-Secret\nX-Secret: 1\nKeep-Alive: 5\n"
                   "Proxy-Connection: keep-alive\nProxy-Authorization: Basic eA==\nAccept: */*\n\n")
    assert http.absolute_target(head) == ("pkgs.test", 8080, b"/simple/x/?a=1")
    assert http.host_header(head) == ("pkgs.test", 8080)
    assert http.forward_request(head, "pkgs.test", 8080, b"/simple/x/?a=1") == (
        b"GET /simple/x/?a=1 HTTP/1.1\r\nHost: pkgs.test:8080\r\nUser-Agent: pip\r\nAccept: */*\r\n"
        b"Connection: close\r\n\r\n")


@pytest.mark.parametrize(("target", "expected"), [
    ("http://pkgs.test", ("pkgs.test", 80, b"/")),
    ("http://pkgs.test?q", ("pkgs.test", 80, b"/?q")),
    ("HTTP://pkgs.test./a", ("pkgs.test", 80, b"/a")),
    ("http://[2001:db8::1]:8080/a", ("2001:db8::1", 8080, b"/a")),
    ("http://192.0.2.1/", ("192.0.2.1", 80, b"/")),
])
def test_absolute_targets(target, expected):
    assert http.absolute_target(request(f"GET {target} HTTP/1.1\n\n")) == expected


@pytest.mark.parametrize(("target", "why"), [
    ("/simple/", "this is a proxy: the request target must be an absolute http:// URI"),
    ("https://pkgs.test/", "a proxy request names an http:// URI (https goes through CONNECT)"),
    ("http://allowed.test@other.test/", "credentials in the request target"),
    ("http://pkgs.test:0/", "'pkgs.test:0': not a port"),
    ("http://pkgs.test:99999/", "'pkgs.test:99999': not a port"),
    ("http://a_b..c/", "'a_b..c' is not a host name or an address"),
    ("http://[::ffff:127.0.0.1]/", "'[::ffff:127.0.0.1]' is not a bracketed IPv6 address"),
    ("http://127.1/", "'127.1' is not a host name or an address"),
])
def test_bad_targets(target, why):
    with pytest.raises(BadMessage) as e:
        http.absolute_target(request(f"GET {target} HTTP/1.1\n\n"))
    assert (e.value.status, e.value.why) == (400, why)


def test_connect_targets():
    assert http.connect_target(request("CONNECT Allowed.Test:443 HTTP/1.1\n\n")) == ("allowed.test", 443)
    assert http.connect_target(request("CONNECT [2001:db8::1]:443 HTTP/1.1\n\n")) == ("2001:db8::1", 443)
    with pytest.raises(BadMessage, match="the port is missing"):
        http.connect_target(request("CONNECT allowed.test HTTP/1.1\n\n"))


@pytest.mark.parametrize(("text", "status", "why"), [
    (b"GET http://a.test/ HTTP/1.1\r\nX: a\rb\r\n\r\n", 400, "a bare CR, LF or NUL in the head"),
    (b"GET http://a.test/ HTTP/1.1\r\nX: a\0b\r\n\r\n", 400, "a bare CR, LF or NUL in the head"),
    ("GET http://a.test/ HTTP/1.1\nX: a\n  folded\n\n", 400, "a folded header line"),
    ("GET http://a.test/ HTTP/1.1\nBad Name: a\n\n", 400, "a header line is not 'name: value'"),
    ("GET http://a.test/ HTTP/2.0\n\n", 505, "only HTTP/1.0 and HTTP/1.1 are spoken here"),
    ("GET  http://a.test/ HTTP/1.1\n\n", 400, "the request line is not 'METHOD TARGET HTTP/1.x'"),
    ("GET http://a.test/ HTTP/1.1\n" + "X: y\n" * 101 + "\n", 431, "more than 100 header fields"),
    ("GET http://a.test/ HTTP/1.1\nX: " + "y" * http.MAX_HEAD + "\n\n", 431,
     f"the head is larger than {http.MAX_HEAD} bytes"),
    ("GET http://a.test/\x7f HTTP/1.1\n\n", 400, "the request target holds a character a URI may not"),
])
def test_malformed_heads_are_refused(text, status, why):
    refused(text, status, why)


@pytest.mark.parametrize(("headers", "expected"), [
    ("", 0),
    ("Content-Length: 5\n", 5),
    ("Content-Length: 5, 5\n", 5),
    ("Content-Length: 5\nContent-Length: 5\n", 5),
    ("Transfer-Encoding: chunked\n", None),
    ("Transfer-Encoding: Chunked\n", None),
])
def test_body_framing(headers, expected):
    assert http.body_length(request(f"POST http://a.test/ HTTP/1.1\n{headers}\n")) == expected


@pytest.mark.parametrize(("headers", "status", "why"), [
    ("Content-Length: 5\nTransfer-Encoding: chunked\n", 400, "both Transfer-Encoding and Content-Length"),
    ("Transfer-Encoding: gzip, chunked\n", 501, "a Transfer-Encoding other than chunked"),
    ("Transfer-Encoding: chunked\nTransfer-Encoding: chunked\n", 501, "a Transfer-Encoding other than chunked"),
    ("Content-Length: 5\nContent-Length: 6\n", 400, "a Content-Length that is not one number"),
    ("Content-Length: -1\n", 400, "a Content-Length that is not one number"),
    ("Content-Length: 0x10\n", 400, "a Content-Length that is not one number"),
])
def test_ambiguous_framing_is_refused(headers, status, why):
    with pytest.raises(BadMessage) as e:
        http.body_length(request(f"POST http://a.test/ HTTP/1.1\n{headers}\n"))
    assert (e.value.status, e.value.why) == (status, why)


def test_a_chunked_body_keeps_its_framing_upstream():
    head = request("POST http://a.test/ HTTP/1.1\nTransfer-Encoding: chunked\nContent-Type: text/plain\n\n")
    assert http.forward_request(head, "a.test", 80, b"/") == (
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n")
    assert http.chunk_size(b"1a;name=value\r\n") == 26 and http.chunk_size(b"0\r\n") == 0
    for line in (b"\r\n", b"-1\r\n", b"1a\n", b"g\r\n", b"1" * 17 + b"\r\n"):
        with pytest.raises(BadMessage):
            http.chunk_size(line)


def test_two_host_headers_are_refused():
    head = request("GET http://a.test/ HTTP/1.1\nHost: a.test\nHost: b.test\n\n")
    with pytest.raises(BadMessage, match="more than one Host header"):
        http.host_header(head)
    assert http.host_header(request("GET http://a.test/ HTTP/1.0\n\n")) is None


def test_response_heads():
    head = http.parse_response(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n"
                               b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n")
    assert http.forward_response(head) == (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    interim = http.parse_response(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert http.forward_response(interim) == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert http.forward_response(http.parse_response(b"HTTP/1.0 204\r\n\r\n")) == (
        b"HTTP/1.0 204\r\nConnection: close\r\n\r\n")
    with pytest.raises(BadMessage) as e:
        http.parse_response(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert e.value.status == 502


def test_the_proxys_own_answers():
    assert http.answer(200) == b"HTTP/1.1 200 Connection established\r\n\r\n"
    body = "nucleus egress policy: refused: 'x.test' matches no --egress-domain rule (none)\n"
    assert http.answer(403, body) == (
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body.encode())


# --- fuzzing --------------------------------------------------------------------------------------

TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=12)
VALUE = st.binary(max_size=40)
HEADERS = st.lists(st.tuples(TOKEN, VALUE), max_size=8)


@given(data=st.binary(max_size=400))
def test_any_bytes_give_a_head_or_a_refusal(data):
    for raw in (data, data + b"\r\n\r\n"):
        try:
            head = http.parse_request(raw)
        except BadMessage as e:
            assert e.status in (400, 431, 505)
            continue
        assert b"\r" not in b"".join(v for _, v in head.headers) and b"\n" not in b"".join(v for _, v in head.headers)


@given(method=TOKEN, path=st.from_regex(r"/[A-Za-z0-9/._~%?=&-]{0,30}", fullmatch=True), headers=HEADERS,
       host=st.sampled_from(["pkgs.test", "a.b.example.org", "192.0.2.1", "[2001:db8::1]"]),
       port=st.one_of(st.none(), st.integers(1, 65535)))
def test_a_forwarded_head_reads_back_as_the_request_it_came_from(method, path, headers, host, port):
    authority = host + (f":{port}" if port is not None else "")
    raw = f"{method} http://{authority}{path} HTTP/1.1\r\n".encode()
    raw += b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
    try:
        head = http.parse_request(raw)
        name, number, origin = http.absolute_target(head)
    except BadMessage:
        return  # a value with a CR, LF or NUL: refused, never passed on
    forwarded = http.parse_request(http.forward_request(head, name, number, origin))
    assert forwarded.start == (method.encode(), origin, b"HTTP/1.1")
    assert len(forwarded.values("host")) == 1 and forwarded.values("connection") == [b"close"]
    kept = [(n, v) for n, v in forwarded.headers if n.lower() not in (b"host", b"connection", b"transfer-encoding")]
    assert all(header in head.headers for header in kept)  # nothing added but Host and Connection
