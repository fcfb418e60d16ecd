"""Drive ComfyUI's own frontend in headless Chromium, as a user would: the Templates dialog,
opening a template, pressing Run. Shared by the browser test (tests/tier3_server/test_editor.py)
and `make demo`'s screenshots.

Needs Debian's `chromium` and Playwright for Python (both installed by scripts/build_host.py);
Playwright only drives the system browser (`executable_path`), it never downloads one.
"""

from __future__ import annotations

import shutil
import time
from typing import Any
from urllib.parse import unquote

# The Templates dialog lists a pack's workflows under its custom_nodes folder name.
PACK_TEMPLATES = "comfyui-region-repair"
BROWSERS = ("chromium", "chromium-browser")
VIEWPORT = {"width": 1400, "height": 900}
# Core frontend messages that appear on every start of an offline server, whatever is loaded:
# its remote release notes and help pages cannot be reached.
OFFLINE_NOISE = ("net::ERR_NAME_NOT_RESOLVED", "Failed to fetch", "ERR_INTERNET_DISCONNECTED")


def chromium_path() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def unavailable() -> str | None:
    """Why the editor cannot be driven here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (make host installs it)"
    if chromium_path() is None:
        return "no chromium on PATH (apt-get install chromium; make host installs it)"
    return None


class Editor:
    """One headless Chromium page on a ComfyUI server's editor. `errors` collects the page's
    uncaught exceptions and console errors (offline noise aside) since the last `mark()`."""

    def __init__(self, url: str, viewport: dict[str, int] = VIEWPORT):
        self.url = url
        self.viewport = viewport
        self.errors: list[str] = []
        self.responses: dict[str, tuple[int, str]] = {}  # url: (status, content type)

    def __enter__(self) -> Editor:
        from playwright.sync_api import sync_playwright
        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        self.page = self._browser.new_page(viewport=self.viewport)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on("console", self._console)
        self.page.on("response", lambda response: self.responses.__setitem__(
            unquote(response.url), (response.status, response.headers.get("content-type", ""))))
        self.page.goto(self.url)
        self.page.wait_for_function("window.app && window.app.graph", timeout=90_000)
        # The first start shows the Templates dialog by itself; start from a closed one.
        self.page.wait_for_timeout(1500)
        self.close_dialog()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._browser.close()
        self._playwright.stop()

    def _console(self, message: Any) -> None:
        if message.type == "error" and not any(n in message.text for n in OFFLINE_NOISE):
            self.errors.append(f"console: {message.text}")

    def mark(self) -> None:
        self.errors.clear()

    def close_dialog(self) -> None:
        dialog = self.page.get_by_role("dialog")
        if dialog.count():
            dialog.first.locator("button.right-6").click()  # its close button, top right
            dialog.first.wait_for(state="hidden")

    def _open_pack(self, pack: str) -> Any:
        self.close_dialog()
        self.page.get_by_role("button", name="Templates", exact=True).click()
        dialog = self.page.get_by_role("dialog")
        dialog.get_by_text(pack, exact=True).first.click()
        dialog.get_by_text(pack, exact=True).nth(1).wait_for()  # the pane's heading
        cards = dialog.locator("[data-testid^='template-workflow-']")
        cards.first.wait_for()
        return cards

    def open_templates(self, pack: str) -> dict[str, dict[str, Any]]:
        """Open Templates, pick the pack's entry, wait for every card's image to settle. Returns,
        by template name, its thumbnail's `src`, `loaded` (decoded, non-empty) and size."""
        cards = self._open_pack(pack)
        shown = 0
        while cards.count() > shown:  # the dialog renders more cards as it is scrolled
            shown = cards.count()
            cards.nth(shown - 1).scroll_into_view_if_needed()
            self.page.wait_for_timeout(700)
        found = {}
        for index in range(cards.count()):  # each image loads once its card is in view
            card = cards.nth(index)
            card.scroll_into_view_if_needed()
            deadline = time.monotonic() + 15
            while True:
                state = card.evaluate("""card => {
                    const img = card.querySelector('img');
                    return {src: img ? img.src : null,
                            loaded: !!img && img.complete && img.naturalWidth > 0,
                            width: img ? img.naturalWidth : 0};
                }""")
                if state["loaded"] or time.monotonic() > deadline:
                    break
                self.page.wait_for_timeout(100)
            name = card.get_attribute("data-testid").removeprefix("template-workflow-")
            found[name] = state
        return found

    def sort_templates(self, order: str = "A → Z") -> None:
        """Pick the dialog's sort order and show the top of the list."""
        self.page.get_by_role("combobox", name="Sort by").click()
        self.page.get_by_role("option", name=order, exact=True).click()
        cards = self.page.get_by_role("dialog").locator("[data-testid^='template-workflow-']")
        cards.first.scroll_into_view_if_needed()
        self.page.wait_for_timeout(500)

    def load_template(self, pack: str, name: str) -> None:
        """Open a template from the dialog, as a click on its card does."""
        self._open_pack(pack)
        self.page.get_by_role("dialog").get_by_placeholder("Search").fill(name)
        self.page.get_by_test_id(f"template-workflow-{name}").click()
        self.page.get_by_role("dialog").first.wait_for(state="hidden")
        self.page.wait_for_function("window.app.graph.nodes.length > 0")
        self.page.wait_for_timeout(500)

    def load_template_file(self, pack: str, name: str) -> None:
        """What a click on a template's card does once the dialog is closed: fetch the file the
        server lists and hand it to the editor's loader (faster than the dialog for many)."""
        self.page.evaluate("""async ([pack, name]) => {
            const response = await fetch(`/api/workflow_templates/${pack}/${name}.json`);
            if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
            await window.app.loadGraphData(await response.json(), true, true, name,
                                           {openSource: 'template'});
        }""", [pack, name])
        self.page.wait_for_timeout(300)

    def fit_view(self) -> None:
        self.page.get_by_role("button", name="Fit View (.)").click()
        self.page.wait_for_timeout(500)

    def graph_nodes(self) -> list[dict[str, Any]]:
        """The loaded graph's nodes: type, whether the frontend knows the type, widget values."""
        return self.page.evaluate("""() => window.app.graph.nodes.map(node => ({
            id: node.id, type: node.type,
            registered: node.type in LiteGraph.registered_node_types,
            widgets: (node.widgets || []).map(w => [w.name, w.value])}))""")

    def run_and_wait_for_images(self, timeout: float = 120) -> list[str]:
        """Press Run and wait until the editor holds an output image for a node, then check that
        the browser decodes it. Returns the images' URLs."""
        self.page.evaluate("window.app.nodeOutputs = {}")
        self.page.get_by_role("button", name="Run", exact=True).click()
        self.page.wait_for_function(
            "Object.values(window.app.nodeOutputs || {}).some(o => o.images && o.images.length)",
            timeout=timeout * 1000)
        return self.page.evaluate("""async () => {
            const urls = [];
            for (const output of Object.values(window.app.nodeOutputs))
                for (const image of output.images || []) {
                    const query = new URLSearchParams({filename: image.filename,
                        subfolder: image.subfolder, type: image.type});
                    const url = `/view?${query}`;
                    const element = new Image();
                    element.src = url;
                    await element.decode();
                    if (element.naturalWidth > 0) urls.push(url);
                }
            return urls;
        }""")
