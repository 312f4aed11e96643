"""What the README and the docs pages show a reader, taken apart for the docs tests: command tables, shell
lines and Python blocks, and the check of a command against the real argument parser.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Put right before a ```python block that cannot run in the test's scratch folder; the reason is required.
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>\S.*?)\s*-->$")
#: ``for s in 0 1 2; do``: the loop variable and its first value, for the lines that use it.
LOOP = re.compile(r"^\s*for\s+(?P<name>\w+)\s+in\s+(?P<first>[^\s;]+)")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")


def documents() -> list[Path]:
    """The README, every page of the site and the dated benchmark notes it includes."""
    pages = sorted((ROOT / "docs").rglob("*.md")) + sorted((ROOT / "benchmarks" / "results").glob("*.md"))
    return [ROOT / "README.md", *pages]


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    not_run: str | None  # the reason, when the block is marked not to run

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"


def code_blocks(text: str, path: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening or not opening["lang"]:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.match(before)
        if before.startswith("<!--") and "not-run" in before and not marker:
            raise AssertionError(f"{path}:{start}: a not-run marker needs a reason: <!-- not-run: REASON -->")
        blocks.append(Block(path, start + 1, opening["lang"], "\n".join(body), marker["reason"] if marker else None))
    return blocks


@dataclass
class TableCommand:
    where: str
    words: list[str]  # the command's words up to its first option, e.g. ["affectlab", "data", "convert", "DATA"]
    flags: list[str]  # the --flags of the command cell: the subcommand must take each
    mentioned: list[str]  # the --flags of the other cells (they may name another subcommand's): the CLI must have each


def table_commands(text: str, path: Path) -> list[TableCommand]:
    """Rows of Markdown tables whose first cell is an ``affectlab ...`` command."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        row = re.match(r"^\|\s*`(affectlab[^`]*)`(?P<rest>.*)$", line)
        if row is None:
            continue
        command = row[1].replace("\\|", "|")
        words = []
        for word in command.split():
            if word.startswith(("-", "[")):
                break
            words.append(word)
        found.append(TableCommand(f"{path.name}:{number}", words, FLAG.findall(command), FLAG.findall(row["rest"])))
    return found


def shell_commands(block: str) -> list[list[str]]:
    """The ``affectlab`` commands in a shell block as argument lists (without ``affectlab``).

    Continued lines are joined and comments dropped; a command may follow environment assignments or another
    command (``&&``), run as ``-m affectlab.cli``, sit inside a quoted argument (``sbatch --wrap '...'``) or in a
    ``for`` loop, whose variable is read as its first value (``--seed $s`` as ``--seed 0``).
    """
    commands = []
    loop_values: dict[str, str] = {}
    for line in block.replace("\\\n", " ").splitlines():
        loop = LOOP.match(line)
        if loop:
            loop_values[loop["name"]] = loop["first"]
        if "affectlab" not in line:
            continue
        for name, first in loop_values.items():  # $s and ${s}, not the start of $seed
            line = re.sub(rf"\$(?:\{{{name}\}}|{name}(?!\w))", first, line)
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        commands.extend(_affectlab_calls(list(lexer)))
    return commands


def _affectlab_calls(tokens: list[str]) -> list[list[str]]:
    calls = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in ("affectlab", "affectlab.cli"):
            end = next((j for j in range(i + 1, len(tokens)) if tokens[j] in (";", "&&", "||", "|", "&")), len(tokens))
            calls.append(tokens[i + 1 : end])
            i = end
            continue
        if token.startswith("affectlab ") and " " in token:
            calls.extend(_affectlab_calls(shlex.split(token)))
        i += 1
    return calls


def subcommand_parser(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    """The (nested) subparser that ``words`` name, e.g. ``["data", "convert"]``; AssertionError if none."""
    current = parser
    for word in words:
        actions = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions:
            break
        choices = actions[0].choices
        if word not in choices:
            raise AssertionError(f"no subcommand {word!r}; the CLI has {sorted(choices)}")
        current = choices[word]
    return current


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def check_table_command(parser: argparse.ArgumentParser, command: TableCommand) -> list[str]:
    """Problems with one table row: an unknown subcommand or a flag the subcommand does not take."""
    try:
        sub = subcommand_parser(parser, command.words[1:])
    except AssertionError as exc:
        return [f"{command.where}: {' '.join(command.words)}: {exc}"]
    known = option_strings(sub) | option_strings(parser)
    problems = [
        f"{command.where}: {' '.join(command.words)}: no option {flag}" for flag in command.flags if flag not in known
    ]
    anywhere = set().union(*(option_strings(p) for p in all_parsers(parser)))
    problems += [f"{command.where}: no command takes {flag}" for flag in command.mentioned if flag not in anywhere]
    return problems


def all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and every (nested) subparser."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(all_parsers(sub))
    return found


def check_shell_command(parser: argparse.ArgumentParser, args: list[str], where: str) -> list[str]:
    """Problems with one shell line: what the real parser says about it (it exits on an error)."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parser.parse_args(args)
    except SystemExit:
        message = stderr.getvalue().strip().splitlines()[-1:] or ["refused"]
        return [f"{where}: affectlab {shlex.join(args)}: {message[0]}"]
    words = [arg for arg in args if not arg.startswith("-")][:2]  # enough to name a nested subcommand
    known = option_strings(parser) | option_strings(_deepest(parser, words))
    flags = [arg.split("=", 1)[0] for arg in args if FLAG.fullmatch(arg.split("=", 1)[0])]
    return [f"{where}: affectlab {shlex.join(args)}: {flag} is an abbreviation" for flag in flags if flag not in known]


def _deepest(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    """The subparser the leading words reach (argparse accepts abbreviated options; the docs spell them out)."""
    for word in words:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            break
        parser = actions[0].choices[word]
    return parser
