"""The admin and the API docs in a real headless Chromium, served as production serves them (tests/browser.py:
gunicorn, DEBUG off, whitenoise on collectstatic output, the site-wide Content-Security-Policy).

What only a browser can tell: the admin's stylesheets apply, and Swagger UI and Redoc run their scripts
under ``script-src 'self'`` without any request leaving our origin; Swagger UI's "Try it out" works with a
token entered under "Authorize". Requests to other origins are aborted (the machine has no network
anyway), so an attempt shows up in ``page_log.offsite`` rather than as a slow page.
"""

import json
from urllib.parse import urlsplit

import pytest

from endpoints.services import endpoint_create
from tests.browser import ADMIN_PASSWORD, admin_login, screenshot
from tests.factories import endpoint_spec, make_token, make_user

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_requests_to_other_origins_are_aborted_and_recorded(page, page_log):
    """The record the docs tests assert is empty does see an attempt (on a page without our policy, which
    would refuse the request before it is made)."""
    page.goto("about:blank")
    failed = page.evaluate("fetch('http://192.0.2.1/x.png').then(() => false, () => true)")
    assert failed and page_log.offsite == ["http://192.0.2.1/x.png"], page_log


def test_admin_login_through_the_form_lands_on_a_styled_admin(page, page_log, superuser):
    page.goto("/admin/")
    # Not logged in: the admin sends the browser to its login form, which is styled before anyone logs in.
    assert urlsplit(page.url).path == "/admin/login/", page.url
    screenshot(page, "test_browser.admin-login-form")  # the teardown one shows the index, logged in
    admin_login(page, superuser.username, ADMIN_PASSWORD)
    assert page.locator("#site-name").inner_text().strip(), page.content()[:500]
    assert superuser.username.upper() in page.locator("#user-tools").inner_text().upper()

    style = page.evaluate("""() => {
        const header = getComputedStyle(document.querySelector('#header'));
        return {header: header.backgroundColor, headerVar: getComputedStyle(document.documentElement)
                    .getPropertyValue('--header-bg').trim(),
                font: getComputedStyle(document.body).fontFamily,
                sheets: [...document.styleSheets].map(s => s.href).filter(Boolean)};
    }""")
    # The admin's base.css defines --header-bg and paints #header with it; without the stylesheet the
    # variable is empty and the header transparent, in the browser's default serif font.
    assert style["headerVar"], style
    assert style["header"] not in {"rgba(0, 0, 0, 0)", "transparent"}, style
    assert style["header"] == page.evaluate("""v => {
        const probe = document.createElement('div'); probe.style.backgroundColor = v; document.body.append(probe);
        const colour = getComputedStyle(probe).backgroundColor; probe.remove(); return colour; }""", style["headerVar"])
    assert "Times New Roman" not in style["font"] and "system-ui" in style["font"], style
    # Served by whitenoise under the hashed names collectstatic wrote (DEBUG is off in the web process).
    assert any(urlsplit(href).path.startswith("/static/admin/css/base.") for href in style["sheets"]), style
    assert page_log.offsite == [] and page_log.errors == [], page_log


@pytest.fixture
def endpoint_owner(broker):
    """A user whose personal account has one endpoint, and a read token of theirs."""
    owner = make_user("docs-owner")
    endpoint_create(account=owner.personal_account, spec=endpoint_spec("swagger-visible"), actor=owner)
    return owner, make_token(owner, role="read")


def test_swagger_ui_loads_only_our_assets_and_try_it_out_lists_the_endpoints(page, page_log, endpoint_owner):
    owner, token = endpoint_owner
    page.goto("/api/docs/")
    operation = page.locator("#operations-endpoints-endpoint_list")
    operation.wait_for()  # rendered from /api/schema/ by Swagger UI's scripts
    assert page.locator(".opblock").count() >= 10, page.locator(".opblock").count()
    assert operation.locator(".opblock-summary-method").inner_text() == "GET"
    assert operation.locator(".opblock-summary-path").get_attribute("data-path") == "/v2/endpoint/{namespace}"

    page.click("button.authorize")
    dialog = page.locator(".dialog-ux .modal-ux")
    # The dialog has a form per security scheme of the schema; bearerAuth's is the one for our tokens.
    bearer = dialog.locator(".auth-container", has=page.locator("#auth-bearer-value"))
    bearer.locator("#auth-bearer-value").fill(token)
    bearer.locator("button.authorize").click()
    dialog.locator("button.btn-done").first.click()  # "Close"
    assert page.locator("button.authorize.locked").count() == 1  # the padlock shows a credential is set

    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("tr[data-param-name='namespace'] input").fill(owner.username)
    with page.expect_response(lambda r: urlsplit(r.url).path == f"/v2/endpoint/{owner.username}") as call:
        operation.locator("button.execute").click()
    # The context has no session cookie, so only the token entered under "Authorize" can make this a 200.
    assert call.value.request.headers.get("authorization") == f"Bearer {token}"
    assert call.value.status == 200
    assert [item["name"] for item in call.value.json()["items"]] == ["swagger-visible"]

    # What the person sees: the "Server response" table with the code and the body.
    shown = operation.locator(".responses-wrapper .live-responses-table tbody tr.response")
    shown.wait_for()
    assert shown.locator(".response-col_status").inner_text().strip() == "200", shown.inner_html()[:2000]
    body = shown.locator(".response-col_description pre.microlight").first.inner_text()
    assert [item["name"] for item in json.loads(body)["items"]] == ["swagger-visible"], body
    operation.scroll_into_view_if_needed()
    assert page_log.offsite == [] and page_log.errors == [], page_log


def test_redoc_renders_the_schema_without_outside_requests(page, page_log):
    page.goto("/api/redoc/")
    # Redoc fetches /api/schema/ and renders the title and an entry per operation.
    page.locator("h1", has_text="Inference Endpoints control plane").wait_for()
    menu = page.locator("[role=menuitem]")
    assert menu.count() >= 10, menu.count()
    page.get_by_text("/v2/endpoint/{namespace}", exact=True).first.wait_for(state="attached")
    assert page_log.offsite == [], page_log  # no request left for another origin
    # Redoc's bundle always renders the Redocly logo in its sidebar from cdn.redoc.ly (there is no option to
    # turn it off). The site-wide policy (img-src 'self' data:) refuses it before any request is made, which
    # Chromium reports on the console; that refusal is expected, anything else is a failure.
    logo = "https://cdn.redoc.ly/redoc/logo-mini.svg"
    refused = [e for e in page_log.errors if logo in e and "Content Security Policy" in e]
    assert [e for e in page_log.errors if e not in refused] == [], page_log


def test_the_operator_console_lists_a_failing_endpoint_and_draws_its_page(admin_page, page_log, broker):
    """From the admin's front page to the console, where a failed endpoint is listed with the reason the
    cluster gave; its page draws the replica timeline and traffic charts and offers the actions."""
    from deployments.observe import Observation
    from deployments.status import status_record

    owner = make_user("console-owner")
    endpoint = endpoint_create(account=owner.personal_account, spec=endpoint_spec("crashy"), actor=owner)
    status_record(endpoint, endpoint.generation, Observation("failed", "Back-off restarting failed container: "
                                                             "CUDA out of memory", 0, 1), url=None)
    page = admin_page
    with page.expect_navigation():
        page.click("#console-link a.section")
    assert urlsplit(page.url).path == "/admin/console/", page.url
    row = page.locator("#console-trouble tbody tr", has_text="console-owner/crashy")
    assert "CUDA out of memory" in row.inner_text() and "failed" in row.inner_text(), page.content()[:2000]
    failed_cell = page.locator("#console-clusters td.console-bad").first
    assert page.evaluate("e => getComputedStyle(e).fontWeight", failed_cell.element_handle()) in {"700", "bold"}
    screenshot(page, "test_browser.console-overview")

    with page.expect_navigation():
        row.locator("a").click()
    assert urlsplit(page.url).path == f"/admin/console/endpoint/{endpoint.pk}/", page.url
    charts = page.locator("svg.console-chart")
    charts.first.wait_for()
    assert charts.count() == 4
    box = charts.first.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 60, box  # drawn, at the size the stylesheet gives
    assert [b.inner_text() for b in page.locator("#console-actions button").all()] == [
        "Pause", "Resume", "Scale to zero", "Delete"]
    assert page_log.offsite == [] and page_log.errors == [], page_log
