"""RabbitMQ for the broker tests: a virtual host of its own per test.

``SYNDICATE_TEST_RABBITMQ_URL`` (default ``amqp://guest:guest@127.0.0.1:5672``)
names the server. Each run creates a vhost ``syndicate-test-<run id>`` (through
the management API when the plugin answers on port 15672, else ``rabbitmqctl``)
and deletes it afterwards, so queues of concurrent runs (and of tests with
other queue arguments) never meet. Where no
RabbitMQ answers, the tests that need it skip and say how to get one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from urllib.parse import quote, urlsplit

import pytest

from conftest import RUN_ID

RABBITMQ_URL = os.environ.get("SYNDICATE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
_SERVER = urlsplit(RABBITMQ_URL)
NOT_REACHABLE = (f"RabbitMQ not reachable on {_SERVER.hostname or '127.0.0.1'}:{_SERVER.port or 5672} "
                 f"({_SERVER.username or 'guest'}/{'guest' if _SERVER.password in (None, 'guest') else '...'}); "
                 "install rabbitmq-server to run them")


def rabbitmq_reachable() -> bool:
    parts = urlsplit(RABBITMQ_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=2):
            return True
    except OSError:
        return False


class Vhost:
    """A RabbitMQ virtual host created for this run, with the URL's user allowed everything in it."""

    def __init__(self) -> None:
        parts = urlsplit(RABBITMQ_URL)
        self.user = parts.username or "guest"
        self.password = parts.password or "guest"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 5672
        self.name = f"syndicate-test-{RUN_ID}-{uuid.uuid4().hex[:6]}"
        self.url = f"amqp://{self.user}:{self.password}@{self.host}:{self.port}/{quote(self.name, safe='')}"
        self.how = ""

    def _management(self, method: str, path: str, body: dict | None = None) -> bool:
        import requests

        try:
            r = requests.request(method, f"http://{self.host}:15672/api{path}", json=body, timeout=5,
                                 auth=(self.user, self.password))
        except requests.RequestException:
            return False
        return r.status_code < 300

    def create(self) -> None:
        vhost = quote(self.name, safe="")
        if self._management("PUT", f"/vhosts/{vhost}", {}):
            self._management("PUT", f"/permissions/{vhost}/{quote(self.user, safe='')}",
                             {"configure": ".*", "write": ".*", "read": ".*"})
            self.how = "management"
            return
        ctl = shutil.which("rabbitmqctl")
        if ctl:
            made = subprocess.run([ctl, "add_vhost", self.name], capture_output=True, text=True, timeout=60)
            if made.returncode == 0:
                subprocess.run([ctl, "set_permissions", "-p", self.name, self.user, ".*", ".*", ".*"],
                               capture_output=True, text=True, timeout=60, check=True)
                self.how = "rabbitmqctl"
                return
        pytest.skip("RabbitMQ answers on 127.0.0.1:5672 but no virtual host can be created for the test run: "
                    "enable the management API (rabbitmq-plugins enable rabbitmq_management) or run the tests "
                    "as a user allowed to call rabbitmqctl")

    def delete(self) -> None:
        if self.how == "management":
            self._management("DELETE", f"/vhosts/{quote(self.name, safe='')}")
        elif self.how == "rabbitmqctl":
            subprocess.run([shutil.which("rabbitmqctl") or "rabbitmqctl", "delete_vhost", self.name],
                           capture_output=True, timeout=60)


@pytest.fixture()
def rabbitmq_vhost():
    """A fresh RabbitMQ vhost for the test (its ``url`` is a broker URL); skips without RabbitMQ."""
    if not rabbitmq_reachable():
        pytest.skip(NOT_REACHABLE)
    vhost = Vhost()
    vhost.create()
    try:
        yield vhost
    finally:
        vhost.delete()
