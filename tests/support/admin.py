"""Talking to the proxy's admin listener in tests: its address, scrapes, the status page."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from html.parser import HTMLParser

from prometheus_client.parser import text_string_to_metric_families

from tests.support.procs import ProxyProcess

ADMIN = re.compile(r"quicproxy admin: (http://\S+?)/\s")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def admin_url(proxy: ProxyProcess) -> str:
    """``http://host:port`` of the admin listener, from what the proxy printed."""
    assert proxy.wait_for_log("quicproxy admin: ", 10), proxy.log_text()
    match = ADMIN.search(proxy.log_text())
    assert match, proxy.log_text()
    return match.group(1)


def admin_get(url: str, method: str = "GET", timeout: float = 10) -> tuple[int, str]:
    """Status and body text of one admin request (errors included)."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> Samples:
    """Every sample of ``/metrics``, parsed by prometheus-client's own text parser."""
    status, text = admin_get(base + "/metrics")
    assert status == 200, text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and wanted <= lab)


def wait_for(check: Callable[[], bool], timeout: float = 8.0) -> bool:
    """Poll ``check`` until it holds or ``timeout`` passes (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


class StatusPage(HTMLParser):
    """The tables of the status page: class name -> rows of cell texts; the h2 headings."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.headings: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("class") or ""
            self.tables.setdefault(self._table, [])
        elif tag == "tr":
            self._row = []
        elif tag == "td":
            self._cell = []
        elif tag == "h2":
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "h2" and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)


def status_page(base: str) -> StatusPage:
    """The parsed ``/`` page."""
    status, text = admin_get(base + "/")
    assert status == 200, text
    page = StatusPage()
    page.feed(text)
    return page
