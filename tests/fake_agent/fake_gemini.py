#!/usr/bin/env python3
"""A fake Gemini CLI for Corral's tests: the fake Claude Code of fake_claude.py
(its input handling and run loop) with Gemini CLI's arguments, chat file and
screen, where Corral depends on them.

- Arguments: `--resume <id>` continues that conversation, `--resume latest` the
  newest of the directory (refused with "No previous sessions found" when there
  is none, "Invalid session identifier" when the id is unknown), `--model <m>`;
  others are ignored. Without `--resume` it picks a new id itself.
- Chat file: `$GEMINI_CLI_HOME/.gemini` (else `$HOME/.gemini`)
  `/tmp/<directory name>/chats/session-<YYYY-MM-DDTHH-MM>-<first 8 of the id>.jsonl`,
  JSONL as Gemini CLI 0.61 writes it (`chatRecordingService`): a session line
  (`sessionId`, `projectHash` = SHA-256 of the directory) at start, then message
  records, a message appended again whole when it changes, `$set` updates.
- Screen: the conversation, "⠋ Thinking… (esc to cancel)" while working, else
  "> Type your message or @path/to/file".
- Prompts: `... tool ...` answers "I'll run ls.", records the answer again with
  its token counts, then with the completed `run_shell_command` call and its
  result, then a tool-response record, then answers "You said: <prompt>";
  `exit` exits with code 0; anything else answers "You said: <prompt>".
"""

import datetime
import glob
import hashlib
import json
import os
import sys
import time
import uuid

from fake_claude import Agent, main, now, out, restore

class Gemini(Agent):
    spinner = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self):
        args = sys.argv[1:]
        resume = None
        model = "gemini-fake-1"
        i = 0
        while i < len(args):
            if args[i] == "--resume" and i + 1 < len(args):
                resume = args[i + 1]
                i += 1
            elif args[i] == "--model" and i + 1 < len(args):
                model = args[i + 1]
                i += 1
            i += 1
        self.model = model
        self.cwd = os.getcwd()
        self.history = []
        self.turns = 0
        self.resumed = False
        self.init_screen()
        self.project_hash = hashlib.sha256(self.cwd.encode()).hexdigest()
        home = os.environ.get("GEMINI_CLI_HOME") or os.environ.get("HOME", "/tmp")
        self.dir = os.path.join(home, ".gemini", "tmp", os.path.basename(self.cwd) or "root", "chats")
        self.file = None
        if resume:
            self.file = self.find(None if resume == "latest" else resume)
            if self.file is None:
                if resume == "latest":
                    out("No previous sessions found for this project.\r\n")
                else:
                    out(f"Invalid session identifier \"{resume}\".\r\n")
                sys.exit(1)
            self.load()
            self.resumed = True
        else:
            self.session_id = str(uuid.uuid4())
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H-%M")
            self.file = os.path.join(self.dir, f"session-{stamp}-{self.session_id[:8]}.jsonl")
            self.append({
                "sessionId": self.session_id,
                "projectHash": self.project_hash,
                "startTime": now(),
                "lastUpdated": now(),
            })

    def find(self, session_id):
        """The chat file of `session_id` (None: the newest of this directory)."""
        files = sorted(glob.glob(os.path.join(self.dir, "session-*.jsonl")), key=os.path.getmtime, reverse=True)
        for path in files:
            with open(path, encoding="utf-8") as f:
                try:
                    head = json.loads(f.readline())
                except ValueError:
                    continue
            if head.get("projectHash") != self.project_hash:
                continue
            if session_id is None or head.get("sessionId") == session_id:
                self.session_id = head["sessionId"]
                return path
        return None

    def path(self):
        return self.file

    def load(self):
        answered = False
        with open(self.file, encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                content = record.get("content")
                if record.get("type") == "user" and isinstance(content, list) and content and "text" in content[0]:
                    self.history.append("> " + content[0]["text"])
                    if answered:
                        self.turns += 1
                    answered = False
                elif record.get("type") == "gemini" and content:
                    if not self.history or self.history[-1] != "✦ " + content:
                        self.history.append("✦ " + content)
                    answered = True

    def append(self, record):
        os.makedirs(self.dir, exist_ok=True)
        with open(self.file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def message(self, kind, content, **extra):
        record = {"id": str(uuid.uuid4()), "timestamp": now(), "type": kind, "content": content}
        record.update(extra)
        self.append(record)
        self.append({"$set": {"lastUpdated": now()}})
        return record

    def answer(self, text):
        self.history.append("✦ " + text)
        return self.message("gemini", text, thoughts=[], tokens=None, model=self.model)

    # --- what the fake Claude calls -----------------------------------------

    def submit(self, text):
        self.history.append("> " + text)
        self.message("user", [{"text": text}])
        if text.strip() == "exit":
            restore()
            sys.exit(0)
        self.prompt = text
        self.start_work("tool" if "tool" in text.split() else "answer")

    def finish_work(self):
        if self.after_work == "tool":
            record = self.answer("I'll run ls.")
            record["tokens"] = {"input": 100, "output": 5, "cached": 0, "thoughts": 0, "tool": 0, "total": 105}
            self.append(record)
            call_id = f"run_shell_command-{int(time.time() * 1000)}-0"
            output = "Command: ls\nStdout: a.txt"
            response = [{"functionResponse": {"id": call_id, "name": "run_shell_command", "response": {"output": output}}}]
            record["toolCalls"] = [{
                "id": call_id,
                "name": "run_shell_command",
                "args": {"command": "ls"},
                "result": response,
                "status": "success",
                "timestamp": now(),
                "displayName": "Shell",
                "resultDisplay": "a.txt",
            }]
            self.append(record)
            self.message("user", response)
            self.history.append("✦ Shell ls … a.txt")
        self.answer(f"You said: {self.prompt}")
        self.turns += 1
        self.mode = "idle"

    def draw(self):
        width, _ = self.size()
        self.paint(
            f"Fake Gemini CLI · session {self.session_id}",
            lambda spin, seconds: f"{spin} Thinking… (esc to cancel, {seconds}s)",
            [
                "╭" + "─" * (width - 2) + "╮",
                "│ > " + (self.input[-(width - 6):] or "  Type your message or @path/to/file"),
                "╰" + "─" * (width - 2) + "╯",
            ],
        )


if __name__ == "__main__":
    main(Gemini)
