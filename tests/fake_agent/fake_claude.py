#!/usr/bin/env python3
"""A fake Claude Code for Corral's tests: behaves like Claude Code where Corral
depends on it, and nowhere else.

- Arguments: `--session-id <uuid>` starts that conversation (refused if its
  transcript exists: "Session ID … is already in use"), `--resume <uuid>` continues
  one (refused with "No conversation found with session ID: …" if its transcript is
  missing), `--model <m>`; others are ignored. Refuses to start when `CLAUDECODE`
  is set, like Claude Code nested in itself.
- Transcript: real-format JSONL lines appended to
  `$HOME/.claude/projects/<cwd, non-alphanumerics as "-">/<session-id>.jsonl`,
  written only once there is a message (as Claude Code does).
- Screen (raw mode, bracketed paste enabled): a header, the recent conversation,
  a spinner line "✻ Working… (esc to interrupt)" while working, a permission box
  "Do you want to proceed? ❯ 1. Yes / 2. No" while asking, else the input box
  "│ > " with "? for shortcuts".
- Prompts (pasted or typed, then Enter):
    `crash`       writes the prompt to the transcript, prints "fake claude: crashing
                  on purpose", then exits with code 3;
    `exit`        exits with code 0;
    `/clear`      switches to a new conversation id (and a new transcript);
    `... ask ...` works, then asks permission for a Bash command; on "1"/Enter it
                  writes the tool use and result, then answers;
    `... hold ...` keeps working until a "g" key arrives;
    anything else works for $FAKE_AGENT_WORK_MS (default 300) ms, then answers
                  "You said: <prompt>" with stop_reason "end_turn".
"""

import datetime
import json
import os
import re
import select
import signal
import sys
import termios
import time
import tty
import uuid

PASTE_START = b"\x1b[200~"
PASTE_END = b"\x1b[201~"


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def out(text):
    os.write(1, text.encode())


class Agent:
    spinner = "✻✽✶✢·"

    def __init__(self):
        args = sys.argv[1:]
        self.model = "claude-fake-1"
        self.session_id = None
        resume = None
        i = 0
        while i < len(args):
            if args[i] == "--session-id" and i + 1 < len(args):
                self.session_id = args[i + 1]
                i += 1
            elif args[i] == "--resume" and i + 1 < len(args):
                resume = args[i + 1]
                i += 1
            elif args[i] == "--model" and i + 1 < len(args):
                self.model = args[i + 1]
                i += 1
            i += 1
        if os.environ.get("CLAUDECODE"):
            out("Error: Claude Code cannot be launched inside another Claude Code session.\r\n")
            sys.exit(1)
        self.cwd = os.getcwd()
        slug = re.sub(r"[^A-Za-z0-9]", "-", self.cwd)
        # Like Claude Code: CLAUDE_CONFIG_DIR (when set and not empty) replaces ~/.claude.
        config = os.environ.get("CLAUDE_CONFIG_DIR") or os.path.join(
            os.environ.get("HOME", "/tmp"), ".claude"
        )
        self.dir = os.path.join(config, "projects", slug)
        self.history = []
        self.turns = 0
        self.resumed = False
        if resume:
            self.session_id = resume
            if not os.path.exists(self.path()):
                out(f"No conversation found with session ID: {resume}\r\n")
                sys.exit(1)
            self.load()
            self.resumed = True
        elif self.session_id:
            if os.path.exists(self.path()):
                out(f"Error: Session ID {self.session_id} is already in use.\r\n")
                sys.exit(1)
        else:
            self.session_id = str(uuid.uuid4())
        self.last_uuid = None
        self.init_screen()

    def init_screen(self):
        """The state of the screen and the input (shared with fake_gemini.py)."""
        self.mode = "idle"
        self.input = ""
        self.pasting = False
        self.pending = b""
        self.work_until = 0.0
        self.hold = False
        self.after_work = None
        self.prompt = ""
        self.frame = 0

    def path(self):
        return os.path.join(self.dir, f"{self.session_id}.jsonl")

    def load(self):
        with open(self.path(), encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                message = entry.get("message") or {}
                content = message.get("content")
                if entry.get("type") == "user" and isinstance(content, str):
                    self.history.append("> " + content)
                elif entry.get("type") == "assistant":
                    for block in content or []:
                        if block.get("type") == "text":
                            self.history.append("● " + block["text"])
                    if message.get("stop_reason") == "end_turn":
                        self.turns += 1

    def write(self, kind, message, extra=None):
        os.makedirs(self.dir, exist_ok=True)
        line_uuid = str(uuid.uuid4())
        entry = {
            "parentUuid": self.last_uuid,
            "isSidechain": False,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session_id,
            "version": "2.0.0-fake",
            "gitBranch": "",
            "type": kind,
            "message": message,
            "uuid": line_uuid,
            "timestamp": now(),
        }
        if extra:
            entry.update(extra)
        self.last_uuid = line_uuid
        with open(self.path(), "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def assistant(self, content, stop_reason):
        self.write(
            "assistant",
            {
                "id": "msg_" + uuid.uuid4().hex[:20],
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 5},
            },
            {"requestId": "req_" + uuid.uuid4().hex[:20]},
        )

    # --- screen -----------------------------------------------------------

    def size(self):
        """The screen's (width, rows): the width capped to 20..100 columns."""
        try:
            cols, rows = os.get_terminal_size(0)
        except OSError:
            cols, rows = 80, 24
        return max(20, min(cols, 100)), rows

    def paint(self, title, working, box):
        """Clears the screen and draws `title` (and the turns a resume found),
        the recent conversation, `working` (with the spinner's frame and seconds)
        while working, and the input `box` (shared with fake_gemini.py)."""
        width, rows = self.size()
        header = [title]
        if self.resumed:
            header.append(f"  resumed with {self.turns} turns")
        header.append("")
        bottom = []
        if self.mode == "working":
            bottom += [working(self.spinner[self.frame % len(self.spinner)], self.frame // 10), ""]
        bottom += box
        room = max(0, rows - len(header) - len(bottom))
        body = [h[:width] for h in self.history[-room:]] if room else []
        screen = header + body
        screen += [""] * max(0, rows - len(screen) - len(bottom))
        screen += bottom
        out("\x1b[H\x1b[2J" + "\r\n".join(screen[:rows]))

    def draw(self):
        width, _ = self.size()
        if self.mode == "asking":
            box = [
                "╭" + "─" * (width - 2) + "╮",
                "│ Bash command",
                "│   rm -rf build",
                "│ Do you want to proceed?",
                "│ ❯ 1. Yes",
                "│   2. No, and tell Claude what to do differently (esc)",
                "╰" + "─" * (width - 2) + "╯",
            ]
        else:
            box = [
                "╭" + "─" * (width - 2) + "╮",
                "│ > " + self.input[-(width - 6):],
                "╰" + "─" * (width - 2) + "╯",
                "  ? for shortcuts",
            ]
        self.paint(
            f"✻ Fake Claude Code · conversation {self.session_id}",
            lambda spin, seconds: f"{spin} Working… ({seconds}s · esc to interrupt)",
            box,
        )

    # --- input -----------------------------------------------------------

    def feed(self, data):
        data = self.pending + data
        self.pending = b""
        while data:
            if self.pasting:
                end = data.find(PASTE_END)
                if end < 0:
                    # The rest of the paste is still to come.
                    self.pending = data
                    return
                self.input += data[:end].decode(errors="replace")
                data = data[end + len(PASTE_END):]
                self.pasting = False
                continue
            if data.startswith(PASTE_START):
                self.pasting = True
                data = data[len(PASTE_START):]
                continue
            if data[:1] == b"\x1b" and len(data) < len(PASTE_START) and PASTE_START.startswith(data):
                self.pending = data
                return
            key = data[:1]
            data = data[1:]
            self.key(key)

    def key(self, key):
        if self.mode == "asking":
            if key in (b"1", b"\r", b"\n"):
                self.approve()
            elif key in (b"2", b"\x1b"):
                self.mode = "idle"
                self.history.append("● (not approved)")
                self.assistant([{"type": "text", "text": "Not approved."}], "end_turn")
            return
        if self.mode == "working":
            if key == b"g":
                self.hold = False
            return
        if key in (b"\r", b"\n"):
            text = self.input
            self.input = ""
            if text.strip():
                self.submit(text)
        elif key in (b"\x7f", b"\x08"):
            self.input = self.input[:-1]
        elif key >= b" ":
            self.input += key.decode(errors="replace")

    def submit(self, text):
        if text.strip() == "/clear":
            self.session_id = str(uuid.uuid4())
            self.last_uuid = None
            self.history = []
            self.turns = 0
            self.resumed = False
            return
        self.history.append("> " + text)
        self.write("user", {"role": "user", "content": text})
        if text.strip() == "crash":
            restore()
            out("\r\nfake claude: crashing on purpose\r\n")
            sys.exit(3)
        if text.strip() == "exit":
            restore()
            sys.exit(0)
        self.prompt = text
        self.start_work("ask" if "ask" in text.split() else "answer", "hold" in text.split())

    def start_work(self, then, hold=False):
        self.mode = "working"
        self.hold = hold
        self.after_work = then
        self.work_until = time.monotonic() + int(os.environ.get("FAKE_AGENT_WORK_MS", "300")) / 1000

    def finish_work(self):
        if self.after_work == "ask":
            self.tool_id = "toolu_" + uuid.uuid4().hex[:20]
            self.assistant(
                [{"type": "tool_use", "id": self.tool_id, "name": "Bash", "input": {"command": "rm -rf build"}}],
                "tool_use",
            )
            self.mode = "asking"
            return
        reply = f"You said: {self.prompt}"
        self.history.append("● " + reply)
        self.assistant([{"type": "text", "text": reply}], "end_turn")
        self.turns += 1
        self.mode = "idle"

    def approve(self):
        self.write(
            "user",
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": self.tool_id, "content": "removed build", "is_error": False}]},
            {"toolUseResult": {"stdout": "removed build", "stderr": "", "interrupted": False}},
        )
        self.history.append("● Bash(rm -rf build) … removed build")
        self.start_work("answer")

    def run(self):
        self.draw()
        while True:
            ready, _, _ = select.select([0], [], [], 0.1)
            dirty = False
            if ready:
                try:
                    data = os.read(0, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.feed(data)
                dirty = True
            if self.mode == "working":
                self.frame += 1
                dirty = True
                if not self.hold and time.monotonic() >= self.work_until:
                    self.finish_work()
            if dirty or RESIZED[0]:
                RESIZED[0] = False
                self.draw()


SAVED = None
RESIZED = [False]


def restore():
    if SAVED is not None:
        try:
            termios.tcsetattr(0, termios.TCSADRAIN, SAVED)
        except termios.error:
            pass
    out("\x1b[?2004l")


def main(kind=None):
    global SAVED
    agent = (kind or Agent)()
    try:
        SAVED = termios.tcgetattr(0)
        tty.setraw(0)
    except termios.error:
        SAVED = None
    out("\x1b[?2004h")
    signal.signal(signal.SIGWINCH, lambda *_: RESIZED.__setitem__(0, True))
    try:
        agent.run()
    finally:
        restore()


if __name__ == "__main__":
    main()
