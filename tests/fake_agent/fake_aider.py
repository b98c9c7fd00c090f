#!/usr/bin/env python3
"""A fake aider for Corral's tests: the fake Claude Code of fake_claude.py (its
input handling and run loop) with aider's arguments, chat history and screen,
where Corral depends on them.

- Arguments: `--chat-history-file <path>` (default `.aider.chat.history.md`),
  `--restore-chat-history` (continues the history: its prompts and answers are
  shown and counted), `--model <m>`; others are ignored.
- Chat history: Markdown appended as aider 0.86's `aider/io.py` writes it:
  `# aider chat started at <local time>` at start, then `> ` notes, `#### `
  prompts and the answers between, lines written with a line break ending in
  two spaces.
- Screen: the conversation, "⠋ Waiting for <model>" while working, else the
  input line "> <input>".
- Prompts: `... edit ...` answers with a fenced edit block (holding a blank
  line), then notes "Applied edit to hello.py" and the token count (in one
  write); `... quiet ...` answers and writes nothing after it; `/exit` exits
  with code 0; anything else answers "You said: <prompt>", then the token
  count.
"""

import datetime
import os
import sys

from fake_claude import Agent, main, restore

EDIT_ANSWER = """I'll add it.

hello.py
```python
<<<<<<< SEARCH
=======
def hello():

    print("hello")
>>>>>>> REPLACE
```"""


class Aider(Agent):
    spinner = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self):
        args = sys.argv[1:]
        self.model = "fake-model"
        self.file = ".aider.chat.history.md"
        restore_history = False
        i = 0
        while i < len(args):
            if args[i] == "--chat-history-file" and i + 1 < len(args):
                self.file = args[i + 1]
                i += 1
            elif args[i] == "--model" and i + 1 < len(args):
                self.model = args[i + 1]
                i += 1
            elif args[i] == "--restore-chat-history":
                restore_history = True
            i += 1
        self.history = []
        self.turns = 0
        self.resumed = False
        self.init_screen()
        if restore_history:
            self.load()
            self.resumed = True
        started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        self.append(f"\n# aider chat started at {started}\n\n")
        self.note(f"Aider v0.86.2 (fake) with {self.model}")

    def load(self):
        """Like aider's `split_chat_history_markdown`: prompts and answers."""
        try:
            with open(self.file, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return
        answer = False
        for line in lines:
            if line.startswith("#### "):
                self.history.append("> " + line[5:].rstrip())
                answer = False
            elif line.startswith("# ") or line.startswith("> ") or not line.strip():
                continue
            elif not answer:
                self.history.append(line)
                self.turns += 1
                answer = True

    def append(self, text):
        with open(self.file, "a", encoding="utf-8") as f:
            f.write(text)

    def note(self, text):
        self.append("> " + text.strip() + "  \n")

    def answer(self, text):
        self.history.append(text.splitlines()[0])
        self.append("\n" + text.strip() + "\n\n")

    # --- what the fake Claude calls -----------------------------------------

    def submit(self, text):
        self.history.append("> " + text)
        self.append("\n#### " + "  \n#### ".join(text.splitlines()) + "  \n")
        if text.strip() == "/exit":
            restore()
            sys.exit(0)
        self.prompt = text
        words = text.split()
        self.start_work("edit" if "edit" in words else "quiet" if "quiet" in words else "answer")

    def finish_work(self):
        if self.after_work == "edit":
            self.answer(EDIT_ANSWER)
            notes = ["Applied edit to hello.py"]
        else:
            self.answer(f"You said: {self.prompt}")
            notes = []
        if self.after_work != "quiet":
            notes.append("Tokens: 1.2k sent, 20 received.")
        # aider appends each note on its own; one write keeps the tests' list of
        # messages the same however the reads fall.
        self.append("".join("> " + n + "  \n" for n in notes))
        self.turns += 1
        self.mode = "idle"

    def draw(self):
        self.paint(
            f"Fake aider · {self.model}",
            lambda spin, seconds: f"{spin} Waiting for {self.model} {seconds}s",
            ["", "> " + self.input],
        )


if __name__ == "__main__":
    main(Aider)
