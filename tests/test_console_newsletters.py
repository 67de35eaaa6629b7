"""The console's newsletter pages over HTTP, and what the readers' pages may never show.

Against the real API server, real Redis, the real Celery worker and the run's SMTP sink.
"""

from __future__ import annotations

import html
import re
import time

import pytest
from browser_fixtures import csrf_of, sign_in
from conftest import unique_article, wait_for
from newsletter_fixtures import addresses, make_list, publish, smtp_sink, subscribe_all
from test_console_security import console_routes

from syndicate.config import get_settings
from syndicate.newsletter import editions, lists, service, tokens


@pytest.fixture()
def sink(redis_client):
    return smtp_sink()


@pytest.fixture()
def admin(api_server, http):
    """A requests.Session signed in to the console."""
    assert sign_in(http, api_server).status_code == 303
    return http


@pytest.fixture()
def newsletter():
    config = make_list(description="The news before breakfast.")
    yield config
    lists.delete_list(config["id"])


def _csrf(admin, base: str, list_id: str) -> str:
    return csrf_of(admin.get(f"{base}/console/newsletters/{list_id}").text)


def _visible_text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_the_security_walk_covers_every_newsletter_page():
    # test_console_security.py refuses each of these without a session (303 for a GET, 403 for a POST).
    found = {(m, p) for m, p in console_routes() if p.startswith("/console/newsletters")}
    assert found == {("GET", "/console/newsletters"), ("GET", "/console/newsletters/acme"),
                     ("POST", "/console/newsletters/acme/subscribers"),
                     ("POST", "/console/newsletters/acme/subscribers/remove"),
                     ("POST", "/console/newsletters/acme/import"), ("GET", "/console/newsletters/acme/preview"),
                     ("GET", "/console/newsletters/acme/preview.html"), ("POST", "/console/newsletters/acme/send"),
                     ("GET", "/console/newsletters/acme/editions/acme")}


def test_every_newsletter_post_without_its_csrf_token_changes_nothing(api_server, admin, newsletter):
    lid = newsletter["id"]
    (kept,) = addresses(1, "csrf")
    subscribe_all(lid, [kept])
    (newcomer,) = addresses(1, "csrf-new")
    attempts = [("subscribers", {"email": newcomer}), ("subscribers/remove", {"email": kept}),
                ("import", {"csv": f"email\n{newcomer}\n"}), ("send", {})]
    for action, fields in attempts:
        for csrf in ({}, {"csrf": "wrong"}):
            answer = admin.post(f"{api_server}/console/newsletters/{lid}/{action}", data={**fields, **csrf},
                                allow_redirects=False)
            assert answer.status_code == 403, (action, answer.text)
        # The import form is multipart: the token is checked there too.
        if action == "import":
            answer = admin.post(f"{api_server}/console/newsletters/{lid}/import",
                                files={"file": ("a.csv", fields["csv"])}, data={"csrf": "wrong"}, allow_redirects=False)
            assert answer.status_code == 403
    assert lists.get_subscriber(lid, newcomer) is None
    assert lists.get_subscriber(lid, kept)["status"] == "confirmed"
    assert editions.history(lid) == []  # no edition was opened


def test_add_search_and_remove_a_subscriber(api_server, admin, newsletter):
    lid = newsletter["id"]
    base = f"{api_server}/console/newsletters/{lid}"
    alice, bob = addresses(2, "search")
    for address in (alice, bob):
        answer = admin.post(f"{base}/subscribers", data={"csrf": _csrf(admin, api_server, lid), "email": address},
                            allow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (303, f"/console/newsletters/{lid}?done=added")
    assert "Added: the address is a confirmed subscriber." in admin.get(f"{base}?done=added").text

    found = admin.get(base, params={"q": alice.split("@")[0].upper()})  # part of the address, any case
    assert alice in found.text and bob not in found.text and "1 subscriber(s) match" in found.text

    answer = admin.post(f"{base}/subscribers/remove", data={"csrf": _csrf(admin, api_server, lid), "email": alice},
                        allow_redirects=False)
    assert answer.status_code == 303
    assert lists.get_subscriber(lid, alice)["status"] == "unsubscribed"
    assert lists.get_subscriber(lid, bob)["status"] == "confirmed"
    confirmed = admin.get(base, params={"status": "confirmed"}).text
    assert bob in confirmed and alice not in confirmed


def test_a_bad_address_is_named_with_its_path_and_nothing_is_added(api_server, admin, newsletter):
    lid = newsletter["id"]
    answer = admin.post(f"{api_server}/console/newsletters/{lid}/subscribers",
                        data={"csrf": _csrf(admin, api_server, lid), "email": "<b>not an address</b>"})
    assert answer.status_code == 422
    assert "<code>$.email</code>" in answer.text and "is not an email address" in answer.text
    assert "<b>not an address</b>" not in answer.text  # shown as text, not markup
    assert lists.counts(lid)["confirmed"] == 0
    gone = admin.post(f"{api_server}/console/newsletters/{lid}/subscribers/remove",
                      data={"csrf": _csrf(admin, api_server, lid), "email": "nobody@mail.example"})
    assert gone.status_code == 404 and "is not on list" in gone.text


def test_a_csv_import_names_each_bad_row_and_imports_the_rest(api_server, admin, newsletter):
    lid = newsletter["id"]
    good, again, left = addresses(3, "csv")
    subscribe_all(lid, [again, left])
    lists.remove_subscriber(lid, left)  # unsubscribed: an import must not bring it back
    rows = f"Name,Email\nAda,{good}\nBad,not-an-address\nDup,{again}\nEmpty,\nLeft,{left}\n"
    answer = admin.post(f"{api_server}/console/newsletters/{lid}/import",
                        data={"csrf": _csrf(admin, api_server, lid)}, files={"file": ("readers.csv", rows, "text/csv")})
    assert answer.status_code == 200, answer.text
    counts = _visible_text(re.search(r'<p id="import-counts">(.*?)</p>', answer.text, re.S).group(1))
    assert " ".join(counts.split()) == ("1 added, 0 confirmed, 1 already subscribed, 1 kept unsubscribed, "
                                        "2 refused.")
    problems = re.findall(r"<tr><td>(\d+)</td><td class=\"error\">(.*?)</td></tr>", answer.text)
    assert [row for row, _ in problems] == ["3", "5"]
    assert "&#39;not-an-address&#39; is not an email address" in problems[0][1]
    assert "&#39;&#39; is not an email address" in problems[1][1]
    assert lists.get_subscriber(lid, good)["status"] == "confirmed"
    assert lists.get_subscriber(lid, left)["status"] == "unsubscribed"

    # Pasted rows work as a file does; a CSV without an email column is refused as a whole.
    (pasted,) = addresses(1, "pasted")
    assert admin.post(f"{api_server}/console/newsletters/{lid}/import",
                      data={"csrf": _csrf(admin, api_server, lid), "csv": f"email\r\n{pasted}\r\n"}).status_code == 200
    assert lists.get_subscriber(lid, pasted)["status"] == "confirmed"
    refused = admin.post(f"{api_server}/console/newsletters/{lid}/import",
                         data={"csrf": _csrf(admin, api_server, lid), "csv": "name\nAda\n"})
    assert refused.status_code == 422 and "<code>$</code>" in refused.text
    assert "an &#39;email&#39; column" in refused.text


def test_the_preview_is_the_html_that_is_sent_framed_in_a_sandbox(api_server, admin, newsletter, sink,
                                                                 celery_worker):
    lid = newsletter["id"]
    (reader,) = addresses(1, "preview")
    subscribe_all(lid, [reader])
    publish(unique_article(section=newsletter["sections"][0], headline='Talks & "terms" <resume>'))
    page = admin.get(f"{api_server}/console/newsletters/{lid}/preview")
    assert page.status_code == 200 and "1 story" in page.text
    frame = re.search(r"<iframe[^>]*>", page.text).group(0)
    assert " sandbox " in frame and f'src="/console/newsletters/{lid}/preview.html"' in frame

    document = admin.get(f"{api_server}/console/newsletters/{lid}/preview.html")
    assert document.status_code == 200 and document.headers["x-edition-stories"] == "1"
    csp = document.headers["content-security-policy"]
    assert "sandbox" in csp and "frame-ancestors 'self'" in csp and "script-src" not in csp
    assert "default-src 'none'" in csp
    assert document.text == service.preview(lid, "html")[0]  # the same render the API's preview uses

    send = admin.post(f"{api_server}/console/newsletters/{lid}/send", data={"csrf": _csrf(admin, api_server, lid)},
                      allow_redirects=False)
    assert send.status_code == 303
    eid = send.headers["location"].rsplit("/", 1)[1]
    (mail,) = wait_for(lambda: sink.received(reader), message="the edition in the sink")
    # SMTP carries lines ending in CRLF; the rest is byte for byte, but for each reader's own unsubscribe link.
    sent = mail.get_body(("html",)).get_content().replace("\r\n", "\n")
    unsubscribe = re.search(r'href="(http[^"]*/unsubscribe/[^"]+)"', sent).group(1)
    assert sent.replace(unsubscribe, "#unsubscribe-preview") == document.text
    assert editions.get_edition(eid)["state"] == "sent"


def test_an_edition_shows_each_recipients_outcome(api_server, admin, newsletter, sink):
    lid = newsletter["id"]
    delivered, refused, doubted = addresses(3, "outcome")
    subscribe_all(lid, [delivered, refused, doubted])
    publish(unique_article(section=newsletter["sections"][0]))
    sink.refuse.add(refused)
    sink.drop_after_data.add(doubted)
    try:
        eid = service.open_manual(lid)
        service.run_edition(eid)
    finally:
        sink.refuse.discard(refused)
        sink.drop_after_data.discard(doubted)
    listing = admin.get(f"{api_server}/console/newsletters/{lid}")
    assert f'href="/console/newsletters/{lid}/editions/{eid}"' in listing.text
    page = admin.get(f"{api_server}/console/newsletters/{lid}/editions/{eid}")
    assert page.status_code == 200
    rows = dict(re.findall(r'<tr><td class="url">([^<]+)</td><td class="outcome-(\w+)">', page.text))
    assert rows == {delivered: "sent", refused: "refused", doubted: "doubt"}
    assert re.search(r'<dd id="edition-counts">1 sent, 1 refused, 1 doubt</dd>', page.text)
    other = make_list()
    try:  # an edition is shown under its own list only
        assert admin.get(f"{api_server}/console/newsletters/{other['id']}/editions/{eid}").status_code == 404
    finally:
        lists.delete_list(other["id"])


def test_reader_pages_share_one_look_and_never_show_an_address_or_a_token(api_server, http, newsletter, sink,
                                                                        celery_worker):
    lid = newsletter["id"]
    (reader,) = addresses(1, "private")
    answer = http.post(f"{api_server}/newsletters/{lid}", data={"email": reader})
    assert answer.status_code == 202
    (mail,) = wait_for(lambda: sink.received(reader), message="the confirmation email")
    confirm = re.search(r"http\S+(/newsletters/confirm/\S+)", mail.get_body(("plain",)).get_content()).group(1)
    token = confirm.rsplit("/", 1)[1]
    sid = lists.get_subscriber(lid, reader)["sid"]
    unsub = f"/unsubscribe/{tokens.sign(get_settings().secret_key, tokens.UNSUBSCRIBE, lid, sid)}"
    expired = f"/newsletters/confirm/{service.confirmation_token(lid, sid, issued_at=time.time() - 49 * 3600)}"
    html_accept = {"Accept": "text/html"}
    pages = {
        "list": http.get(f"{api_server}/newsletters/{lid}"),
        "editions": http.get(f"{api_server}/newsletters/{lid}/editions"),
        "confirm": http.get(api_server + confirm),
        "confirmed": http.post(api_server + confirm),
        "unsubscribe": http.get(api_server + unsub),
        "unsubscribed": http.post(api_server + unsub, data={"List-Unsubscribe": "One-Click"}),
        "expired": http.get(api_server + expired),
        "bad link": http.get(f"{api_server}/unsubscribe/forged.token"),
        "unknown list": http.get(f"{api_server}/newsletters/no-such-list-{lid}", headers=html_accept),
    }
    assert lists.get_subscriber(lid, reader)["status"] == "unsubscribed"  # one-click POST still works
    # The expired page's form, sent by a browser, answers with a page too (an API client gets JSON).
    pages["fresh link"] = http.post(f"{api_server}/newsletters/{lid}/subscribe", data={"email": reader},
                                    headers=html_accept)
    statuses = {name: page.status_code for name, page in pages.items()}
    assert statuses == {"list": 200, "editions": 200, "confirm": 200, "confirmed": 200, "unsubscribe": 200,
                        "unsubscribed": 200, "expired": 410, "bad link": 400, "unknown list": 404, "fresh link": 202}
    for name, page in pages.items():
        assert page.headers["content-type"].startswith("text/html"), name
        assert '<link rel="stylesheet" href="/newsletters/static/reader.css">' in page.text, name
        assert "<style" not in page.text and "<script" not in page.text, name
        assert "script-src 'none'" in page.headers["content-security-policy"], name
        assert reader not in page.text, name
        assert token not in _visible_text(page.text) and sid not in _visible_text(page.text), name
    assert 'role="alert"' in pages["unknown list"].text and "no-such-list" not in pages["unknown list"].text
    css = http.get(f"{api_server}/newsletters/static/reader.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    # An API client still gets the JSON error shape.
    assert http.get(f"{api_server}/newsletters/no-such-list-{lid}").json()["error"] == "not_found"


def test_a_browser_sending_a_bad_address_is_told_so_on_a_page(api_server, http, newsletter):
    lid = newsletter["id"]
    browser_accept = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    for path in (f"/newsletters/{lid}", f"/newsletters/{lid}/subscribe"):  # the list's form, the expired link's form
        answer = http.post(api_server + path, data={"email": "<i>nope</i>"}, headers=browser_accept)
        assert answer.status_code == 422 and answer.headers["content-type"].startswith("text/html"), path
        assert 'role="alert"' in answer.text and "is not an email address" in answer.text, path
        assert "<i>nope</i>" not in answer.text and "Check your inbox" not in answer.text, path
        assert 'name="email"' in answer.text, path  # the form again, to correct it
    assert lists.counts(lid) == {"pending": 0, "confirmed": 0, "unsubscribed": 0}
