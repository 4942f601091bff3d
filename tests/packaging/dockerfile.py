"""Just enough of the Dockerfile and .dockerignore formats to check and replay our images."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

FLAG = re.compile(r"--([a-z-]+)(?:=(\S+))?\s+")


@dataclass(frozen=True)
class Instruction:
    """One instruction; continuation lines joined, comments dropped."""

    keyword: str
    value: str
    line: int

    def flags(self) -> tuple[dict[str, str], str]:
        """Leading `--name=value` flags (as RUN, COPY and HEALTHCHECK take) and the rest."""
        flags: dict[str, str] = {}
        rest = self.value
        while match := FLAG.match(rest):
            flags[match.group(1)] = match.group(2) or ""
            rest = rest[match.end() :]
        return flags, rest

    def body(self) -> str:
        """The instruction without its flags."""
        return self.flags()[1]

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, else None (shell form)."""
        text = self.body().strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        return None

    def env_pairs(self) -> dict[str, str]:
        """ENV NAME=value ... as a mapping."""
        pairs: dict[str, str] = {}
        for token in shlex.split(self.value):
            name, sep, value = token.partition("=")
            if not sep:
                raise ValueError(f"line {self.line}: ENV without '=' is not supported here")
            pairs[name] = value
        return pairs


@dataclass(frozen=True)
class Stage:
    """One FROM ... [AS name] and the instructions under it."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """Every instruction with this keyword, in order."""
        return [ins for ins in self.instructions if ins.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        """The instruction with this keyword that takes effect (the last one)."""
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.base}"
        return found[-1]

    def env(self) -> dict[str, str]:
        """Every ENV of the stage, merged."""
        merged: dict[str, str] = {}
        for ins in self.all("ENV"):
            merged.update(ins.env_pairs())
        return merged


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, parser directives and comments dropped."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        keyword, _, value = " ".join(pending).partition(" ")
        found.append(Instruction(keyword.upper(), value.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def parse(path: Path) -> list[Stage]:
    """The stages of a Dockerfile."""
    stages: list[Stage] = []
    for ins in instructions(path.read_text()):
        if ins.keyword == "FROM":
            words = ins.body().split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{path.name}: {ins.keyword} before FROM"
            stages[-1].instructions.append(ins)
    return stages


def _regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


@dataclass(frozen=True)
class DockerIgnore:
    """A .dockerignore: the last pattern matching a path or one of its parents decides."""

    rules: tuple[tuple[bool, re.Pattern[str]], ...]

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        """Load the patterns of a .dockerignore file."""
        rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line.removeprefix("!").strip().strip("/")
            rules.append((negate, _regex(pattern)))
        return cls(tuple(rules))

    def excluded(self, relative: str) -> bool:
        """Whether a path (relative to the context, `/`-separated) stays out of the context."""
        parts = relative.strip("/").split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for negate, regex in self.rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                result = not negate
        return result
