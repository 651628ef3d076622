#!/usr/bin/env python3
"""The admin console as a person sees it, in headless Chromium (selenium and
Debian's chromium-driver): `offergate demo` is started on free loopback
ports, driven with offers, Besitos pages and a fault plan that opens the
Encore circuit, then the console is opened and read. With scripts off the
same page must still say what is going on.

usage: console.py OFFERGATE_BINARY SCREENSHOT.png
Exit 0 when every check passed; a failed check names what the page showed.
"""

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.support.ui import WebDriverWait

BIN, SHOT = sys.argv[1], sys.argv[2]
OFFERS = "/encore/publisher/sdk/v1/offers/message"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def offer(proxy, n):
    return http("POST", f"{proxy}{OFFERS}", {
        "clientId": f"client-{n % 3}",
        "chatId": f"chat-browser-{n}",
        "attributes": {"countryCode": "US", "language": "en", "platform": "ios"},
    })


def message(proxy, chat, msg_id):
    return http("POST", f"{proxy}/offergate/v1/encore/messages", {
        "clientId": "client-9", "chatId": chat, "messageId": msg_id,
        "sentAt": int(time.time()), "text": "hi",
        "attributes": {"countryCode": "US", "language": "en", "platform": "ios"},
    })


def browser(scripts=True):
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1280,1500"]:
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if not scripts:
        opts.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def text(driver, css):
    # Found and read in one script: the page redraws every second, and an
    # element found by one call may be replaced before the next reads it.
    shown = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : null", css)
    if shown is None:
        raise NoSuchElementException(f"nothing on the page matches {css}")
    return shown


def check(what, ok, shown):
    if not ok:
        raise AssertionError(f"{what}: the page shows {shown!r}")
    print(f"console.py: ok: {what}")


def main():
    listen, admin, sim = free_port(), free_port(), free_port()
    demo = subprocess.Popen(
        [BIN, "demo", "--listen", f"127.0.0.1:{listen}",
         "--admin-listen", f"127.0.0.1:{admin}",
         "--simulator-listen", f"127.0.0.1:{sim}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy, console, simulator = (f"http://127.0.0.1:{p}" for p in (listen, admin, sim))
    stop = threading.Event()
    drivers = []
    try:
        for _ in range(100):
            try:
                if http("GET", f"{console}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("the demo did not become ready")
        # Calls that succeed, on both partners.
        for n in range(4):
            assert offer(proxy, n)[0] == 200
        status, _ = http("POST", f"{proxy}/data/messages/demo/upcoming-goals?page=1", {"hours_to": 48})
        assert status == 200, status
        # The conversation endpoint: an offer, then a mid-thread message.
        assert json.loads(message(proxy, "chat-conv-1", "m1")[1])["decision"] == "offer"
        assert json.loads(message(proxy, "chat-conv-1", "m2")[1])["reason"] == "mid_thread"
        # Encore starts failing: the circuit opens, and stays open while
        # calls keep coming (each probe after the cooldown meets a 503 again).
        http("POST", f"{simulator}/__sim/faults",
             {"route": "encore_offers", "plan": ["503"] * 400})

        def traffic():
            n = 100
            while not stop.is_set():
                offer(proxy, n)
                n += 1
                time.sleep(0.2)
        threading.Thread(target=traffic, daemon=True).start()
        time.sleep(2.5)
        # A first message while Encore fails: the messages route's fallback.
        assert json.loads(message(proxy, "chat-conv-2", "m3")[1])["decision"] == "skip"

        d = browser()
        drivers.append(d)
        d.get(f"{console}/")
        # The script ran (the CSP hash admits it) and drew at least once.
        WebDriverWait(d, 10).until(
            lambda d: "live" in d.find_element(By.TAG_NAME, "body").get_attribute("class")
            and d.find_element(By.ID, "updated").text.startswith("updated"))
        WebDriverWait(d, 10).until(
            lambda d: text(d, "#partner-encore .circuit").startswith("open"))
        circuit = text(d, "#partner-encore .circuit")
        check("the Encore circuit is shown open, with when it closes",
              circuit.startswith("open, closes in") and circuit.endswith(" s"), circuit)
        reason = text(d, "#partner-encore .reason")
        check("with its reason", "upstream_status_503" in reason, reason)
        check("Besitos' circuit closed", text(d, "#partner-besitos .circuit").startswith("closed"),
              text(d, "#partner-besitos .circuit"))
        fallbacks = text(d, "#route-encore_offers .fallbacks")
        counted = dict(p.split(": ") for p in fallbacks.split(", ") if ": " in p)
        check("the fallbacks are counted by reason",
              int(counted.get("circuit_open", "0")) > 0 and int(counted.get("upstream_status_503", "0")) > 0,
              fallbacks)
        conv = text(d, "#route-encore_messages .fallbacks")
        check("a message's Encore failure is the messages route's fallback, not an offers call",
              "upstream_status_503" in conv or "circuit_open" in conv, conv)
        check("the decisions are shown by reason",
              int(text(d, "#decision-offer .total")) >= 1 and int(text(d, "#decision-mid_thread .total")) >= 1,
              (text(d, "#decision-offer .total"), text(d, "#decision-mid_thread .total")))
        # Read in one script: the page redraws the table every second, so
        # rows found in one call may be gone by the next (a stale element).
        rows = d.execute_script(
            "return [...document.querySelectorAll('#requests tr.request')]"
            ".map(r => [r.querySelector('.fallback').innerText.trim(),"
            " r.querySelector('.status').innerText.trim()])")
        reasons = [fallback for fallback, _ in rows]
        statuses = {status for _, status in rows}
        check("the recent requests are listed, with their fallbacks",
              len(rows) >= 10 and "circuit_open" in reasons and statuses <= {"200"}, (len(rows), reasons[:5], statuses))
        page = d.find_element(By.TAG_NAME, "body").text
        check("no caller id, key or token on the page",
              not any(s in page for s in ["client-0", "client-1", "pk_test_demo", "demo-token"]), "a secret")
        check("the version and uptime are shown", text(d, "#version") != "" and "s" in text(d, "#uptime"),
              text(d, "#uptime"))
        # Each chart a line through its points (one every 10 s, the first
        # step shorter), the last value in its caption.
        WebDriverWait(d, 15).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart-requests_per_second circle")) >= 2)
        for chart in ["requests_per_second", "fallbacks_per_second", "p99_ms"]:
            line = d.find_element(By.CSS_SELECTOR, f"#chart-{chart} path").get_attribute("d")
            caption = text(d, f"#chart-{chart} figcaption")
            check(f"the {chart} chart is drawn", "L" in line and float(caption.split(": ")[1].split(" ")[0]) > 0,
                  (line, caption))
        errors = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
        check("the browser reported no error (no blocked script, no failed poll)", not errors, errors)
        d.save_screenshot(SHOT)
        print(f"console.py: screenshot in {SHOT}")

        # Scripts off: the page as the server filled it in.
        plain = browser(scripts=False)
        drivers.append(plain)
        plain.get(f"{console}/")
        body = plain.find_element(By.TAG_NAME, "body")
        check("with scripts off the page is not live", "live" not in (body.get_attribute("class") or ""),
              body.get_attribute("class"))
        check("with scripts off it still shows the circuit",
              text(plain, "#partner-encore .circuit").split(",")[0] in ("open", "half open (probing)"),
              text(plain, "#partner-encore .circuit"))
        check("and says how to update it", "reload the page" in text(plain, "#updated"), text(plain, "#updated"))
        check("and the decisions", int(text(plain, "#decision-offer .total")) >= 1,
              text(plain, "#decision-offer .total"))
        check("and lists the requests", len(plain.find_elements(By.CSS_SELECTOR, "#requests tr.request")) >= 10,
              "rows")
    finally:
        stop.set()
        for d in drivers:
            d.quit()
        demo.terminate()
        demo.wait(10)
    print("console.py: every check passed")


if __name__ == "__main__":
    main()
