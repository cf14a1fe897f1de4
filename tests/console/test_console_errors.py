"""The console's pages say what went wrong in one line: no server, an unknown inspection, a bad filter."""

from __future__ import annotations

import httpx
from console_server import ConsoleThread

from services.common.ports import free_port
from services.console.app import ConsoleSettings


def test_without_a_server_every_page_says_where_it_looked() -> None:
    dead = f"127.0.0.1:{free_port()}"
    with ConsoleThread(ConsoleSettings(server=dead, timeout_s=3)) as web:
        url = web.url
        for path in ("/inspections?line=l1", "/products?line=l1", "/inspection?line=l1&id=x"):
            r = httpx.get(url + path, timeout=30)
            assert r.status_code == 503
            assert f"no Echo-IAD server at {dead}: is `echo-iad serve` running?" in r.text
        assert httpx.get(url + "/", follow_redirects=False).headers["location"] == "/inspections?line=default"


def test_unknown_inspections_and_bad_filters_are_named(console) -> None:  # type: ignore[no-untyped-def]
    r = httpx.get(f"{console}/inspection?line=line-c&id=never", timeout=30)
    assert r.status_code == 404 and "never" in r.text
    r = httpx.get(f"{console}/inspections?line=line-c&verdict=maybe", timeout=30)
    assert r.status_code == 400 and "verdict: &#39;maybe&#39; is not one of good, defect, answered, unparsed" in r.text
    r = httpx.get(f"{console}/inspections?line=line-c&since=yesterday", timeout=30)
    assert r.status_code == 400 and "since / until" in r.text
    r = httpx.get(f"{console}/inspections?line=bad line!", timeout=30)
    assert r.status_code == 400 and "line_id: " in r.text
