"""A real conversation through the generated Python bindings of cascade-ffi.

Runs against a real relay process (`cascade-server serve`) provisioned with
the `cascade` admin CLI. Needs:
  - the generated bindings (`cascade_ffi.py` with `libcascade_ffi.so` beside
    it) on PYTHONPATH; `mobile-ffi/tests/run_python.sh` sets that up;
  - the `cascade-server` and `cascade` binaries in CASCADE_BIN_DIR (default
    $CARGO_TARGET_DIR/debug, else target/debug of the workspace).
"""

import asyncio
import os
import pathlib
import re
import subprocess
import threading
import time

import pytest

import cascade_ffi as ffi

WORKSPACE = pathlib.Path(__file__).resolve().parents[3]


def bin_dir() -> pathlib.Path:
    if os.environ.get("CASCADE_BIN_DIR"):
        return pathlib.Path(os.environ["CASCADE_BIN_DIR"])
    target = os.environ.get("CARGO_TARGET_DIR", str(WORKSPACE / "target"))
    return pathlib.Path(target) / "debug"


class Relay:
    """A `cascade-server` process on a free loopback port."""

    def __init__(self, data_dir: pathlib.Path, extra=()):
        server = bin_dir() / "cascade-server"
        assert server.exists(), f"{server} not built"
        self.proc = subprocess.Popen(
            [
                str(server),
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(data_dir),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = None
        deadline = time.time() + 30
        assert self.proc.stdout is not None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"cascade-server listening on (https?://\S+)", line)
            if m:
                self.url = m.group(1)
                break
        assert self.url, "relay did not report its address"
        # Keep draining the relay's output so it never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        self.token_file = data_dir / "admin-token"
        assert self.token_file.exists(), "relay wrote no admin token"

    def _drain(self):
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def cascade(*args: str) -> str:
    """Runs the `cascade` CLI; returns its stdout."""
    out = subprocess.run(
        [str(bin_dir() / "cascade"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, f"cascade {' '.join(args)} failed: {out.stderr}"
    return out.stdout


def key() -> bytes:
    """A new device's data key, as an app makes it before putting it in the
    platform keystore."""
    return os.urandom(32)


class Collector(ffi.EventListener):
    """An EventListener implemented in Python: collects every event."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []

    def on_event(self, event):
        with self.lock:
            self.events.append(event)

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def messages(self):
        return [e.message for e in self.snapshot() if e.is_message()]


async def wait_for(what, check, timeout=20.0):
    """Polls the async `check` until it returns something truthy."""
    deadline = time.time() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
def relay(tmp_path):
    r = Relay(tmp_path / "relay")
    yield r
    r.stop()


def provision(relay: Relay, tmp_path: pathlib.Path, server_ca=None):
    """The organisation's admins: a CA, the org on the relay, two users."""
    ca = tmp_path / "ca"
    cascade("admin", "org", "init", "--org", "acme", "--name", "Acme Health", "--dir", str(ca))
    admin = ["admin", "--server", relay.url, "--token-file", str(relay.token_file)]
    if server_ca is not None:
        admin += ["--server-ca", str(server_ca)]
    cascade(*admin, "create-org", "acme", "--name", "Acme Health", "--ca-dir", str(ca))
    for user, name, role in (("alice@acme", "Alice Smith", "Doctor"), ("bob@acme", "Bob Jones", "Nurse")):
        cascade(*admin, "add-user", user, "--name", name, "--role", role, "--ca-dir", str(ca))
    codes = {
        u: cascade(*admin, "token", u, "--ca-dir", str(ca)).strip().splitlines()[-1]
        for u in ("alice@acme", "bob@acme")
    }
    return admin, ca, codes


def test_conversation(relay, tmp_path):
    admin, ca, codes = provision(relay, tmp_path)
    asyncio.run(conversation(relay, tmp_path, admin, ca, codes))


async def conversation(relay, tmp_path, admin, ca, codes):
    alice_dir = str(tmp_path / "alice")
    bob_dir = str(tmp_path / "bob")

    # A bad code is a typed error.
    with pytest.raises(ffi.CascadeError.Enrolment):
        await ffi.enrol(str(tmp_path / "nobody"), key(), relay.url, "not-a-code", "phone")

    # Each app makes a random key for its device's data and keeps it in the
    # platform keystore (Android Keystore, iOS Keychain).
    alice_key, bob_key = key(), key()
    alice_id = await ffi.enrol(alice_dir, alice_key, relay.url, codes["alice@acme"], "alice-phone")
    bob_id = await ffi.enrol(bob_dir, bob_key, relay.url, codes["bob@acme"], "bob-phone")
    assert alice_id.user_id == "alice@acme"
    assert bob_id.user_id == "bob@acme"
    assert bob_id.display_name == "Bob Jones"

    # The organisation's admins issue the devices' certificates.
    cascade(*admin, "issue", "--ca-dir", str(ca))

    alice_events, bob_events = Collector(), Collector()
    alice = await ffi.CascadeClient.open(alice_dir, alice_key, alice_events)
    bob = await ffi.CascadeClient.open(bob_dir, bob_key, bob_events)
    assert alice.identity().user_id == "alice@acme"

    # Both connect once (bob's KeyPackages reach the relay).
    assert await alice.sync_once(20_000)
    assert await bob.sync_once(20_000)

    group = await alice.create_group("Ward 7")
    assert re.fullmatch(r"[0-9a-f]{32}", group)
    await alice.add_members(group, ["bob@acme"])
    assert await alice.sync_once(20_000)

    async def bob_has_group():
        return [c for c in await bob.conversations() if c.group_id == group]

    conv = (await wait_for("bob to join", bob_has_group))[0]
    assert conv.state == "active"
    await wait_for("the group's name", lambda: _named(bob, group, "Ward 7"))

    members = await alice.members(group)
    assert sorted(m.user_id for m in members) == ["alice@acme", "bob@acme"]
    assert [m.is_self for m in members if m.user_id == "alice@acme"] == [True]
    assert {m.role for m in members} == {"Doctor", "Nurse"}
    # The same, by person with their devices, this user first (what a
    # member list shows; the core works it out, not the app).
    people_here = await alice.participants(group)
    assert [p.user_id for p in people_here] == ["alice@acme", "bob@acme"]
    assert [p.is_me for p in people_here] == [True, False]
    assert all(len(p.devices) == 1 for p in people_here)
    conv_alice = [c for c in await alice.conversations() if c.group_id == group][0]
    assert (conv_alice.people, conv_alice.orgs) == (2, ["acme"])

    # Alice -> Bob.
    sent = await alice.send_text(group, "hello bob")
    # A MIMI message id: 32 octets, the first naming SHA-256.
    assert re.fullmatch(r"01[0-9a-f]{62}", sent)

    async def bob_got_hello():
        return [m for m in await bob.history(group, 50) if m.text == "hello bob"]

    got = (await wait_for("bob to receive", bob_got_hello))[0]
    assert got.sender == "alice@acme"
    assert got.id == sent
    assert got.state == "received"
    assert got.kind == "text"

    # Bob -> Alice.
    reply = await bob.send_text(group, "hi alice")

    async def alice_got_reply():
        return [m for m in await alice.history(group, 50) if m.text == "hi alice"]

    got = (await wait_for("alice to receive", alice_got_reply))[0]
    assert got.sender == "bob@acme" and got.id == reply

    # Alice's own message was accepted (`sent`), then confirmed by Bob's
    # device (`delivered`).
    async def hello_delivered():
        return [
            m for m in await alice.history(group, 50) if m.id == sent and m.state == "delivered"
        ]

    await wait_for("alice's message to be delivered", hello_delivered)

    # The events came through the Python callback.
    async def events_arrived():
        a = [m for m in alice_events.messages() if m.text == "hi alice"]
        b = [m for m in bob_events.messages() if m.text == "hello bob"]
        return a and b

    await wait_for("message events", events_arrived)
    a_events, b_events = alice_events.snapshot(), bob_events.snapshot()
    assert any(e.is_connection() and e.state == "online" for e in a_events)
    assert any(e.is_connection() and e.state == "online" for e in b_events)

    # Delivery state events reach the callback on its own thread, possibly
    # after the stored state changed: wait for them too.
    async def delivery_events():
        seen = alice_events.snapshot()
        return all(
            any(e.is_delivery_state() and e.message_id == sent and e.state == state for e in seen)
            for state in ("sent", "delivered")
        )

    await wait_for("sent and delivered events", delivery_events)
    assert any(e.is_conversation_updated() and e.group_id == group for e in b_events)
    assert any(e.is_membership_changed() and e.group_id == group for e in a_events)

    # Safety numbers agree on both sides; the directory finds Bob.
    assert await alice.safety_number(group, "bob@acme") == await bob.safety_number(
        group, "alice@acme"
    )
    people = await alice.search_directory("bob")
    assert [p.user_id for p in people] == ["bob@acme"]
    assert people[0].display_name == "Bob Jones"

    # A push token registers (and unregisters) through the bindings.
    assert await bob.register_push("fcm:test-token", 10_000)
    assert await bob.register_push(None, 10_000)

    # Typed errors.
    with pytest.raises(ffi.CascadeError.UnknownConversation):
        await alice.send_text("00" * 16, "nobody here")
    with pytest.raises(ffi.CascadeError.Invalid):
        await alice.send_text("not-hex", "x")
    with pytest.raises(ffi.CascadeError.Invalid):
        await alice.add_members(group, ["Not A User"])
    # Only a message the relay refused can be sent again.
    with pytest.raises(ffi.CascadeError.Invalid):
        await alice.retry_message(group, sent)

    # Replies, edits, reactions and deletes, and their events.
    note = await alice.send_text(group, "porter for bay 3")

    async def bob_got_note():
        return [m for m in await bob.history(group, 50) if m.id == note]

    await wait_for("the note", bob_got_note)
    answer = await bob.send_reply(group, "which bay?", note)

    async def alice_got_answer():
        return [m for m in await alice.history(group, 50) if m.id == answer]

    got = (await wait_for("the reply", alice_got_answer))[0]
    assert (got.reply_to.id, got.reply_to.sender, got.reply_to.text) == (
        note,
        "alice@acme",
        "porter for bay 3",
    )
    await alice.edit_message(group, note, "porter for bay 3 at 14:00")

    async def bob_sees_edit():
        m = await bob.message(group, note)
        return m.text == "porter for bay 3 at 14:00" and m.edited_at is not None

    await wait_for("the edit", bob_sees_edit)
    assert [v.text for v in await bob.message_versions(group, note)] == ["porter for bay 3"]
    with pytest.raises(ffi.CascadeError.Invalid):
        await bob.edit_message(group, note, "not his to edit")
    await bob.react(group, note, "👍")

    async def alice_sees_reaction():
        r = (await alice.message(group, note)).reactions
        return [(x.emoji, x.users) for x in r] == [("👍", ["bob@acme"])]

    await wait_for("the reaction", alice_sees_reaction)
    await bob.delete_message(group, answer)

    async def alice_sees_delete():
        m = await alice.message(group, answer)
        return m.deleted_by == "bob@acme" and m.text is None

    await wait_for("the delete", alice_sees_delete)

    # Search: inside words, any case; a deleted message is not found.
    hits = await bob.search(ffi.FfiSearchQuery(text="PORT", group_id=group))
    assert [(h.message.id, h.conversation) for h in hits] == [(note, "Ward 7")]
    m = hits[0].matches[0]
    assert hits[0].message.text.encode()[m.start : m.end] == b"port"
    assert await alice.search(ffi.FfiSearchQuery(text="which bay")) == []
    with pytest.raises(ffi.CascadeError.Invalid):
        await alice.search(ffi.FfiSearchQuery(text="mg"))

    async def change_events():
        seen = [e.change for e in alice_events.snapshot() if e.is_message_changed()]
        return all(c in seen for c in ("edited", "reactions", "deleted")) or None

    # Alice's own edit is an event too; Bob's reaction and delete reach her.
    await wait_for("message-changed events", change_events)

    # Roles: Alice created it and is its admin; Bob, a member, may not
    # promote himself or (once Alice keeps renaming for admins) rename it.
    details = await bob.room_details(group)
    assert details.admins == ["alice@acme"]
    assert details.my_role == ffi.FfiRole.MEMBER
    assert ffi.FfiAction.REMOVE not in details.may
    with pytest.raises(ffi.CascadeError.Forbidden):
        await bob.set_role(group, "bob@acme", ffi.FfiRole.ADMIN)
    await alice.set_policy(group, ffi.FfiAction.RENAME, ffi.FfiRole.ADMIN)
    await alice.set_role(group, "bob@acme", ffi.FfiRole.ADMIN)

    async def bob_is_admin():
        d = await bob.room_details(group)
        return d.my_role == ffi.FfiRole.ADMIN and d.admins == ["alice@acme", "bob@acme"]

    await wait_for("Bob made an admin", bob_is_admin)
    rules = {r.action: r.needs for r in (await bob.room_details(group)).policy}
    assert rules[ffi.FfiAction.RENAME] == ffi.FfiRole.ADMIN
    roles = {p.user_id: p.conversation_role for p in await alice.participants(group)}
    assert roles == {"alice@acme": ffi.FfiRole.ADMIN, "bob@acme": ffi.FfiRole.ADMIN}
    await bob.rename(group, "Ward 7 (nights)")

    async def alice_sees_name():
        return await _named(alice, group, "Ward 7 (nights)")

    await wait_for("the new name", alice_sees_name)

    # Disappearing messages: an admin sets the timer; a message sent now
    # says, on both devices, when it disappears.
    with pytest.raises(ffi.CascadeError.Invalid):
        await alice.set_timer(group, 5)
    await alice.set_timer(group, 24 * 3600)

    async def bob_has_timer():
        return (await bob.room_details(group)).disappear_after == 24 * 3600

    await wait_for("the timer", bob_has_timer)
    fleeting = await alice.send_text(group, "bay 2 keys with the porter")

    async def bob_got_fleeting():
        got = [m for m in await bob.history(group, 50) if m.id == fleeting]
        return got and got[0].expires_at is not None and got

    got = (await wait_for("the disappearing message", bob_got_fleeting))[0]
    assert 0 < got.expires_at - got.sent_at <= 24 * 3600 * 1000
    await alice.set_timer(group, None)

    # Read receipts: Bob reads the conversation; Alice's message says one
    # person read it, and who, and a ReadBy event came. Only the sender may
    # ask. Bob can turn sending them off.
    await bob.mark_read(group)

    async def alice_sees_it_read():
        return (await alice.message(group, fleeting)).read_by == 1

    await wait_for("Bob's read report", alice_sees_it_read)
    receipts = await alice.receipts(group, fleeting)
    assert [r.user_id for r in receipts.read] == ["bob@acme"]
    assert receipts.recipients == 1 and receipts.per_person_delivery
    assert any(
        isinstance(e, ffi.FfiEvent.READ_BY) and e.user_id == "bob@acme"
        for e in alice_events.snapshot()
    )
    with pytest.raises(ffi.CascadeError.Invalid):
        await bob.receipts(group, fleeting)
    assert await bob.read_receipts()
    await bob.set_read_receipts(False)
    assert not await bob.read_receipts()
    await bob.set_read_receipts(True)

    # Muting: Alice mutes Ward 7 on her phone; Bob's next message there
    # raises no notification for her (the client decides), and does again
    # once unmuted.
    await alice.set_muted(group, True)
    assert [c.muted for c in await alice.conversations() if c.group_id == group] == [True]
    quiet = await bob.send_text(group, "no need to look now")

    async def alice_got_quiet():
        return [m for m in await alice.history(group, 50) if m.id == quiet]

    await wait_for("the quiet message", alice_got_quiet)
    assert not await alice.notifies(group, quiet)
    assert not await bob.notifies(group, quiet), "never one's own"
    await alice.set_muted(group, False)
    assert await alice.notifies(group, quiet)

    # A mention reaches Alice even while she has the conversation muted,
    # and shows her certified name; the edit box gets the handle back.
    await alice.set_muted(group, True)
    called = await bob.send_text(group, "@alice@acme can you check bed 4?")

    async def alice_got_called():
        return [m for m in await alice.history(group, 50) if m.id == called]

    m = (await wait_for("the mention", alice_got_called))[0]
    assert m.mentions == ["alice@acme"]
    assert m.text == f"@{alice.identity().display_name} can you check bed 4?"
    assert [s.mention for s in m.segments] == ["alice@acme", None]
    assert m.typed_text == "@alice@acme can you check bed 4?"
    assert await alice.notifies(group, called)
    await alice.set_muted(group, False)

    # A file: Bob sends a rota; Alice's phone shows it and saves the same
    # bytes, with progress events on both sides.
    rota = tmp_path / "rota.pdf"
    rota.write_bytes(bytes(i % 251 for i in range(300_000)))
    sent = await bob.send_file(group, str(rota), None, "Next week")

    async def alice_got_file():
        return [m for m in await alice.history(group, 50) if m.id == sent]

    f = (await wait_for("the file", alice_got_file))[0]
    assert f.kind == "attachment" and f.text == "Next week"
    assert (f.attachment.name, f.attachment.media_type, f.attachment.size) == (
        "rota.pdf",
        "application/pdf",
        300_000,
    )
    saved = tmp_path / "saved.pdf"
    assert await alice.save_attachment(group, sent, str(saved)) == 300_000
    assert saved.read_bytes() == rota.read_bytes()
    assert any(
        isinstance(e, ffi.FfiEvent.TRANSFER) and not e.upload and e.done == e.total
        for e in alice_events.snapshot()
    )

    # A backup: Alice's phone writes one under a recovery key the app shows
    # her; her new tablet, enrolled with a code of its own, restores it (a
    # wrong key is refused first and changes nothing).
    recovery = ffi.generate_recovery_key()
    assert re.fullmatch(r"([A-Z2-7]{4}-){5}[A-Z2-7]{4}", recovery)
    backup_file = tmp_path / "alice.cascade-backup"
    made = await alice.backup(str(backup_file), recovery)
    assert made.conversations == 1 and made.messages >= 5 and made.bytes > 0
    tablet_code = cascade(*admin, "token", "alice@acme", "--ca-dir", str(ca)).strip().splitlines()[-1]
    tablet_dir = str(tmp_path / "alice-tablet")
    tablet_key = key()
    await ffi.enrol(tablet_dir, tablet_key, relay.url, tablet_code, "alice-tablet")
    cascade(*admin, "issue", "--ca-dir", str(ca))
    tablet = await ffi.CascadeClient.open(tablet_dir, tablet_key, Collector())
    with pytest.raises(ffi.CascadeError.Other) as wrong:
        await tablet.restore(str(backup_file), ffi.generate_recovery_key())
    assert wrong.value.code == "backup"
    restored = await tablet.restore(str(backup_file), recovery.lower().replace("-", " "))
    assert restored.messages == made.messages
    assert "hello bob" in [m.text for m in await tablet.history(group, 100)]
    await tablet.shutdown()

    # Linking: Alice's new laptop shows a code; her phone answers; both show
    # the same digits; she types them on the phone, which sends its history.
    laptop_code = cascade(*admin, "token", "alice@acme", "--ca-dir", str(ca)).strip().splitlines()[-1]
    laptop_dir = str(tmp_path / "alice-laptop")
    laptop_key = key()
    await ffi.enrol(laptop_dir, laptop_key, relay.url, laptop_code, "alice-laptop")
    cascade(*admin, "issue", "--ca-dir", str(ca))
    laptop = await ffi.CascadeClient.open(laptop_dir, laptop_key, Collector())
    assert await laptop.sync_once(20_000)
    offer = await laptop.link_start()
    assert re.fullmatch(r"\d{4} \d{4}", offer.code) and offer.qr.startswith("cascade-link:1:")
    with pytest.raises(ffi.CascadeError.Other) as nothing:
        await alice.link_approve("0000 0000")
    assert nothing.value.code == "link"
    theirs = await alice.link_approve(offer.qr)
    mine = await laptop.link_wait(20_000)
    assert theirs.digits == mine.digits and re.fullmatch(r"\d{3} \d{3}", mine.digits)
    assert mine.display_name == "Alice Smith"
    sent = await alice.link_send(mine.digits)
    got = await laptop.link_receive(20_000)
    assert sent.messages >= made.messages and got.messages >= made.messages
    assert "hello bob" in [m.text for m in await laptop.history(group, 100)]
    await laptop.shutdown()

    # Typing: live to Alice while she is connected, gone when it lapses.
    await bob.set_typing(group, True)

    async def alice_sees_typing():
        return await alice.typing(group) == ["bob@acme"]

    await wait_for("Bob typing", alice_sees_typing)
    assert any(
        isinstance(e, ffi.FfiEvent.TYPING) and e.user_id == "bob@acme" and e.until > 0
        for e in alice_events.snapshot()
    )
    await bob.set_typing(group, False)

    async def alice_sees_stopped():
        return await alice.typing(group) == []

    await wait_for("Bob stopped typing", alice_sees_stopped)

    # Pause / resume: offline work is queued and goes out on resume.
    bob.pause()
    queued = await alice.send_text(group, "while you were away")
    bob.resume()

    async def bob_got_queued():
        return [m for m in await bob.history(group, 50) if m.id == queued]

    await wait_for("the queued message", bob_got_queued)

    # Bob leaves: the conversation is no longer active for him.
    await bob.leave(group)

    async def bob_left():
        try:
            await bob.send_text(group, "still here?")
        except ffi.CascadeError.NotActive:
            return True
        return False

    await wait_for("bob to have left", bob_left)

    await alice.shutdown()
    await bob.shutdown()
    with pytest.raises(ffi.CascadeError.Closed):
        await alice.conversations()
    # Once shut down, no thread of theirs calls into Python any more: one
    # that did while the interpreter exits would abort it.
    assert event_threads() == []

    # Closed, Bob's data opens with his key only: another key is the typed
    # WrongKey (and changes nothing), a key of the wrong length is refused,
    # and his key still opens it with everything there.
    files_before = data_files(bob_dir)
    with pytest.raises(ffi.CascadeError.WrongKey):
        await ffi.CascadeClient.open(bob_dir, key(), Collector())
    with pytest.raises(ffi.CascadeError.Invalid):
        await ffi.CascadeClient.open(bob_dir, bob_key[:16], Collector())
    assert data_files(bob_dir) == files_before
    for content in files_before.values():
        assert b"hello bob" not in content and b"Ward 7" not in content
    bob_events = Collector()
    bob = await ffi.CascadeClient.open(bob_dir, bob_key, bob_events)
    assert [m.text for m in await bob.history(group, 50) if m.text == "hello bob"] == ["hello bob"]

    # The app lock: the organisation's default idle period, Locked refuses
    # what shows content, only Bob's key unlocks.
    assert await bob.idle_lock_secs() == 300
    bob.input()
    bob.lock()
    assert bob.is_locked()
    await wait_for("the Locked event", async_true(
        lambda: any(isinstance(e, ffi.FfiEvent.LOCKED) for e in bob_events.snapshot())))
    with pytest.raises(ffi.CascadeError.Locked):
        await bob.history(group, 50)
    with pytest.raises(ffi.CascadeError.Locked):
        await bob.conversations()
    with pytest.raises(ffi.CascadeError.WrongKey):
        await bob.unlock(key())
    assert bob.is_locked()
    await bob.unlock(bob_key)
    assert not bob.is_locked()
    assert [c.name for c in await bob.conversations()] != []

    # A new key from the keystore: a wrong current key changes nothing; after
    # the change only the new key unlocks and opens his data, with
    # everything there.
    new_key = key()
    with pytest.raises(ffi.CascadeError.WrongKey):
        await bob.change_key(key(), new_key)
    await bob.change_key(bob_key, new_key)
    bob.lock()
    with pytest.raises(ffi.CascadeError.WrongKey):
        await bob.unlock(bob_key)
    await bob.unlock(new_key)
    await bob.shutdown()
    with pytest.raises(ffi.CascadeError.WrongKey):
        await ffi.CascadeClient.open(bob_dir, bob_key, Collector())
    bob = await ffi.CascadeClient.open(bob_dir, new_key, Collector())
    assert [m.text for m in await bob.history(group, 50) if m.text == "hello bob"] == ["hello bob"]
    await bob.shutdown()


def async_true(check):
    """An async check from a plain one, for `wait_for`."""
    async def run():
        return check()
    return run


def event_threads():
    """This process's threads that hand events to a listener."""
    return [t for t in pathlib.Path("/proc/self/task").iterdir()
            if (t / "comm").read_text().strip() == "cascade-events"]


def data_files(data_dir):
    """Every file in a device's data directory, with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(pathlib.Path(data_dir).iterdir()) if p.is_file()}


async def _named(client, group, name):
    return [c for c in await client.conversations() if c.group_id == group and c.name == name]


def tls_files(tmp_path: pathlib.Path):
    """A private CA for the relay's address and a certificate it signed for
    127.0.0.1, made with openssl as the admin guide does (§2.1)."""
    d = tmp_path / "tls"
    d.mkdir()

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    openssl("req", "-x509", "-newkey", "ed25519", "-nodes", "-days", "30",
            "-subj", "/CN=Acme relay CA", "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "ed25519", "-nodes", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", "relay.key", "-out", "relay.csr")
    openssl("x509", "-req", "-in", "relay.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-days", "30", "-copy_extensions", "copy", "-out", "relay.pem")
    return d / "ca.pem", d / "relay.pem", d / "relay.key"


def test_a_tls_relay_with_a_pinned_ca(tmp_path):
    """Devices enrol and talk through the bindings over HTTPS and WSS to a
    relay whose certificate only a pinned private CA vouches for."""
    ca_pem, cert, key = tls_files(tmp_path)
    relay = Relay(tmp_path / "relay", ["--tls-cert", str(cert), "--tls-key", str(key)])
    try:
        assert relay.url.startswith("https://")
        admin, ca, codes = provision(relay, tmp_path, server_ca=ca_pem)
        asyncio.run(tls_conversation(relay, tmp_path, admin, ca, codes, ca_pem.read_text()))
    finally:
        relay.stop()


async def tls_conversation(relay, tmp_path, admin, ca, codes, server_ca):
    # Without the pin the system roots do not vouch for the relay: a typed
    # error, and the code is not spent.
    with pytest.raises(ffi.CascadeError.Enrolment) as refused:
        await ffi.enrol(str(tmp_path / "unpinned"), key(), relay.url, codes["alice@acme"], "phone")
    assert "TLS" in str(refused.value) or "certificate" in str(refused.value), refused.value
    # A plain http:// address to the same relay is not TLS: refused as well.
    with pytest.raises(ffi.CascadeError.Enrolment):
        await ffi.enrol(
            str(tmp_path / "plain"),
            key(),
            relay.url.replace("https://", "http://"),
            codes["alice@acme"],
            "phone",
            server_ca=server_ca,
        )

    alice_dir, bob_dir = str(tmp_path / "alice"), str(tmp_path / "bob")
    alice_key, bob_key = key(), key()
    await ffi.enrol(
        alice_dir, alice_key, relay.url, codes["alice@acme"], "alice-phone", server_ca=server_ca
    )
    await ffi.enrol(bob_dir, bob_key, relay.url, codes["bob@acme"], "bob-phone", server_ca=server_ca)
    cascade(*admin, "issue", "--ca-dir", str(ca))

    # The pin is kept with the identity: opening needs nothing more.
    alice = await ffi.CascadeClient.open(alice_dir, alice_key, Collector())
    bob = await ffi.CascadeClient.open(bob_dir, bob_key, Collector())
    assert await alice.sync_once(20_000)
    assert await bob.sync_once(20_000)
    group = await alice.create_group("Ward 7 (TLS)")
    await alice.add_members(group, ["bob@acme"])
    assert await alice.sync_once(20_000)
    await alice.send_text(group, "over TLS")

    async def bob_got_it():
        if not [c for c in await bob.conversations() if c.group_id == group]:
            return False
        return [m for m in await bob.history(group, 50) if m.text == "over TLS"]

    await wait_for("bob to receive over TLS", bob_got_it)
    await alice.shutdown()
    await bob.shutdown()
