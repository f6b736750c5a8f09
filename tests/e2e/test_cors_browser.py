"""A real browser (headless Chromium) on another origin uses the official JS SDK against
`shipyard serve`: login, a list on the hot read path, and errors it can read (a 400 from a
Starlette route, a 404 from the read path). Without CORS every call fails with status 0."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.servers import SUPERUSER, Server, serve_directory

SDK = Path(__file__).parent / "js" / "node_modules" / "pocketbase" / "dist" / "pocketbase.umd.js"

PAGE = """<!doctype html><html><body><pre id="out">pending</pre>
<script src="pocketbase.umd.js"></script>
<script>
(async () => {
  const out = [];
  const pb = new PocketBase(new URLSearchParams(location.search).get("api"));
  const su = pb.collection("_superusers");
  try {
    await su.authWithPassword("%s", "%s");
    out.push("auth ok");
    out.push("list " + (await su.getList(1, 5)).totalItems);
    try { await su.getOne("nosuchrecord123"); } catch (e) { out.push("view " + e.status); }
    try { await su.authWithPassword("%s", "wrong-password"); }
    catch (e) { out.push("login " + e.status + " " + e.response.message); }
  } catch (e) { out.push("FAILED " + e.status + " " + e.message); }
  document.getElementById("out").textContent = out.join("|");
})();
</script></body></html>
"""


@pytest.fixture
def page_origin(tmp_path: Path) -> Iterator[str]:
    """A static server for the app page: a different origin from the API's."""
    if not SDK.exists():
        pytest.fail(f"{SDK} missing: run `npm ci` in tests/e2e/js")
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(SDK, site / SDK.name)
    (site / "index.html").write_text(PAGE % (SUPERUSER[0], SUPERUSER[1], SUPERUSER[0]))
    with serve_directory(site) as url:
        yield url


def test_browser_app_on_another_origin_uses_the_sdk(server: Server, page_origin: str) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("no chromium binary on PATH")
    api = server.url.replace("127.0.0.1", "localhost")  # another host, another port
    r = subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu",
            "--virtual-time-budget=15000", "--dump-dom",
            f"{page_origin}/index.html?api={api}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    out = r.stdout.split('<pre id="out">', 1)[-1].split("</pre>", 1)[0]
    assert out == "auth ok|list 1|view 404|login 400 Failed to authenticate.", r.stdout[-2000:]
