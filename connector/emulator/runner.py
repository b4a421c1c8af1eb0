"""`Emulator`: build a tenant from a scenario and serve it over TLS on loopback, in a background thread."""

from __future__ import annotations

import asyncio
import ssl
import threading
from urllib.parse import quote
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from .http import Response
from .scenario import FaultSpec, Scenario, load_scenario
from .server import Dispatcher, make_app, route_modules
from .state import EmulatorState
from .store import Mailbox
from .tls import ServerTLS, make_tls


class ControlError(RuntimeError):
    """A control call that the emulator refused; carries its status and Graph error body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def build_state(scenario: Scenario) -> EmulatorState:
    """An `EmulatorState` with every scenario user and item loaded."""
    state = EmulatorState(scenario)
    modules = route_modules()
    for spec in scenario.users:
        user = {
            "id": spec.id,
            "userPrincipalName": spec.userPrincipalName,
            "displayName": spec.displayName or spec.userPrincipalName.split("@")[0],
            "givenName": spec.givenName,
            "surname": spec.surname,
            "mail": spec.mail,
            "jobTitle": spec.jobTitle,
            "department": spec.department,
            "businessPhones": [],
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": "en-US",
            "proxyAddresses": spec.proxyAddresses or ([f"SMTP:{spec.mail}"] if spec.mail else []),
            "_hasMailbox": spec.hasMailbox,
        }
        mb = Mailbox(user)
        state.tenant.add(mb)
    for spec in scenario.users:
        mb = state.tenant.find(spec.userPrincipalName)
        assert mb is not None
        if not spec.hasMailbox:
            continue
        for mod in modules:
            seed = getattr(mod, "seed", None)
            if seed is not None:
                seed(state, mb, spec)
    if scenario.generate is not None:
        from .generate import generate

        generate(state, scenario.generate)
    for mb in state.tenant.mailboxes.values():
        mb.on_change = _notifier(state)
    return state


def _notifier(state: EmulatorState) -> Any:
    def on_change(mb: Mailbox, resource: str, container: str, item: Any, change_type: str) -> None:
        hook = state.extensions.get("on_change")
        if hook is not None:
            hook(mb, resource, container, item, change_type)

    return on_change


class Emulator:
    """A running emulated tenant.

    Use as a context manager::

        with Emulator("samples/tenants/contoso.yaml") as emu:
            cred = ClientSecretCredential(emu.tenant_id, cid, secret, authority=emu.authority,
                                          connection_verify=emu.ca_bundle, disable_instance_discovery=True)
    """

    def __init__(self, scenario: Scenario | str | Path, *, host: str = "127.0.0.1", port: int = 0, tls_dir: Path | None = None) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.host = host
        self.port = port
        self._tls_dir = tls_dir
        self.tls: ServerTLS | None = None
        self.state = build_state(self.scenario)
        self.dispatcher = Dispatcher(self.state)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # lifecycle ------------------------------------------------------------------------------
    def start(self) -> Emulator:
        """Bind the port and start serving; returns self."""
        self.tls = make_tls(self._tls_dir)
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_site())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                error.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="m365-emulator", daemon=True)
        self._thread.start()
        ready.wait(30)
        if error:
            raise error[0]
        return self

    async def _start_site(self) -> None:
        assert self.tls is not None
        self._runner = web.AppRunner(make_app(self.dispatcher), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls.server_context(), backlog=512)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.state.origin = f"https://{host}:{self.port}"

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # connection facts -----------------------------------------------------------------------
    @property
    def origin(self) -> str:
        """https://host:port."""
        return self.state.origin

    @property
    def graph_url(self) -> str:
        """The Graph v1.0 base URL."""
        return f"{self.origin}/v1.0"

    @property
    def authority(self) -> str:
        """The authority host URL (azure-identity `authority=`; MSAL appends the tenant)."""
        return self.origin

    @property
    def tenant_id(self) -> str:
        """The tenant's id."""
        return self.state.tenant.id

    @property
    def ca_bundle(self) -> str:
        """Path of the PEM CA bundle that verifies the emulator's TLS certificate."""
        assert self.tls is not None, "start the emulator first"
        return str(self.tls.ca_bundle)

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSL context trusting the emulator's CA (for httpx `verify=`)."""
        return ssl.create_default_context(cafile=self.ca_bundle)

    @property
    def control_url(self) -> str:
        """The control API root."""
        return f"{self.origin}/_emulator"

    def connection_info(self) -> dict[str, str]:
        """What `m365sync emulator serve` prints when ready."""
        return {"graph_url": self.graph_url, "authority": self.authority, "tenant_id": self.tenant_id, "ca_bundle": self.ca_bundle, "control_url": self.control_url}

    # in-process control ---------------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Run a coroutine on the emulator's loop (where all state lives) and wait for it."""
        assert self._loop is not None, "start the emulator first"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Call a control route in-process: `emu.call("POST", "/_emulator/users/a@b/deliver", {...})`."""
        raw = orjson.dumps(body) if body is not None else b""
        resp: Response = self.run(self.dispatcher.dispatch(method, path, {"content-type": "application/json"}, raw))
        data = orjson.loads(resp.body) if resp.body else None
        if resp.status >= 400:
            raise ControlError(resp.status, data)
        return data

    def add_message(self, user: str, folder: str, message: dict[str, Any]) -> dict[str, Any]:
        """Put a message into `folder` (well-known name, id, or path such as `inbox/Projects`)."""
        return self.call("POST", f"/_emulator/users/{user}/mailFolders/{quote(folder, safe='')}/messages", message)  # type: ignore[no-any-return]

    def deliver(self, user: str, message: dict[str, Any]) -> dict[str, Any]:
        """Deliver mail from an external sender into the user's Inbox."""
        return self.call("POST", f"/_emulator/users/{user}/deliver", message)  # type: ignore[no-any-return]

    def update_message(self, user: str, message_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Change a message as a user would (any property)."""
        return self.call("PATCH", f"/_emulator/users/{user}/messages/{message_id}", patch)  # type: ignore[no-any-return]

    def delete_message(self, user: str, message_id: str) -> None:
        """Hard-delete a message."""
        self.call("DELETE", f"/_emulator/users/{user}/messages/{message_id}")

    def move_message(self, user: str, message_id: str, destination: str) -> dict[str, Any]:
        """Move a message to another folder."""
        return self.call("POST", f"/_emulator/users/{user}/messages/{message_id}/move", {"destination": destination})  # type: ignore[no-any-return]

    def add_folder(self, user: str, display_name: str, parent: str = "msgfolderroot") -> dict[str, Any]:
        """Create a mail folder."""
        return self.call("POST", f"/_emulator/users/{user}/mailFolders", {"displayName": display_name, "parent": parent})  # type: ignore[no-any-return]

    def add_event(self, user: str, event: dict[str, Any]) -> dict[str, Any]:
        """Create an event in the user's calendar (Graph event JSON; `recurrence` makes a series)."""
        return self.call("POST", f"/_emulator/users/{user}/events", event)  # type: ignore[no-any-return]

    def update_event(self, user: str, event_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Change an event or one occurrence (which then becomes an exception)."""
        return self.call("PATCH", f"/_emulator/users/{user}/events/{event_id}", patch)  # type: ignore[no-any-return]

    def delete_event(self, user: str, event_id: str) -> None:
        """Delete an event, or cancel one occurrence of a series."""
        self.call("DELETE", f"/_emulator/users/{user}/events/{event_id}")

    def add_contact(self, user: str, contact: dict[str, Any]) -> dict[str, Any]:
        """Create a contact (a `folder` key picks a contact folder by name)."""
        return self.call("POST", f"/_emulator/users/{user}/contacts", contact)  # type: ignore[no-any-return]

    def update_contact(self, user: str, contact_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Change a contact."""
        return self.call("PATCH", f"/_emulator/users/{user}/contacts/{contact_id}", patch)  # type: ignore[no-any-return]

    def delete_contact(self, user: str, contact_id: str) -> None:
        """Delete a contact."""
        self.call("DELETE", f"/_emulator/users/{user}/contacts/{contact_id}")

    def add_task(self, user: str, todo_list: str, task: dict[str, Any]) -> dict[str, Any]:
        """Create a To Do task in a list given by id or display name."""
        return self.call("POST", f"/_emulator/users/{user}/todo/lists/{quote(todo_list, safe='')}/tasks", task)  # type: ignore[no-any-return]

    def update_task(self, user: str, todo_list: str, task_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Change a To Do task."""
        return self.call("PATCH", f"/_emulator/users/{user}/todo/lists/{quote(todo_list, safe='')}/tasks/{task_id}", patch)  # type: ignore[no-any-return]

    def delete_task(self, user: str, todo_list: str, task_id: str) -> None:
        """Delete a To Do task."""
        self.call("DELETE", f"/_emulator/users/{user}/todo/lists/{quote(todo_list, safe='')}/tasks/{task_id}")

    def evict_sync_state(self, user: str) -> int:
        """Forget every delta token of a mailbox; the next use of one gets 410."""
        return int(self.call("POST", f"/_emulator/users/{user}/evict-sync-state")["evicted"])

    def add_fault(self, rule: dict[str, Any] | FaultSpec) -> int:
        """Install a fault rule; returns its id."""
        body = rule.model_dump(exclude_none=True) if isinstance(rule, FaultSpec) else rule
        return int(self.call("POST", "/_emulator/faults", body)["ids"][0])

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self.call("DELETE", "/_emulator/faults")

    def stats(self) -> dict[str, Any]:
        """Requests by status, 429s, and max concurrency per mailbox."""
        return self.call("GET", "/_emulator/stats")  # type: ignore[no-any-return]

    def approve_device_code(self, user_code: str, user: str) -> None:
        """Complete a device-code sign-in as `user`."""
        self.call("POST", "/_emulator/devicecode/approve", {"user_code": user_code, "user": user})

    @property
    def request_log(self) -> list[dict[str, Any]]:
        """Every Graph request so far: method, path as sent, status, mailbox, ms."""
        return list(self.state.request_log)
