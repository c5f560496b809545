"""User datasets as JSONL: the attacker's (or researcher's) uploaded fine-tuning data.

Two line formats, one `Sample` each:
  {"prompt": ..., "response": ..., "system"?: ..., "harmful"?: true|false, "label"?: ..., "meta"?: {...}}
  {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...], "harmful"?, "label"?, "meta"?}
For `messages`, the last user → assistant pair is used (with the latest system turn before it); a
conversation with no assistant turn gives its last user turn as a prompt-only sample.
Why strict: this is where outside data enters, so every problem is reported once, here, with the file,
1-based line number, field and fix; unknown fields are errors so a typo ("promt") never passes silently.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from workbench.data.types import Sample

PAIR_FIELDS = ("prompt", "response", "system", "harmful", "label", "meta")
CHAT_FIELDS = ("messages", "harmful", "label", "meta")
ROLES = ("system", "user", "assistant")
FORMATS = 'each line must be {"prompt": "...", "response": "..."} or {"messages": [{"role": ..., "content": ...}]}'


class DataValidationError(ValueError):
    """A user data file is malformed; the message names file, line, field and fix."""


def _fail(path: Path, line: int, field: str, problem: str, fix: str) -> DataValidationError:
    return DataValidationError(f"{path}, line {line}: field {field!r} {problem}. Fix: {fix}.")


def _optional(rec: dict, path: Path, line: int) -> dict:
    """The fields both formats share: harmful, label, meta."""
    harmful = rec.get("harmful")
    if harmful is not None and not isinstance(harmful, bool):
        raise _fail(path, line, "harmful", f"is {harmful!r}", "use true, false or null")
    meta = rec.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise _fail(path, line, "meta", f"is a {type(meta).__name__}", "use a JSON object or drop the field")
    return {"harmful": harmful, "label": rec.get("label"), "meta": dict(meta or {})}


def _text(rec: dict, key: str, path: Path, line: int, required: bool, where: str = "") -> str | None:
    field = where or key
    if key not in rec or rec[key] is None:
        if required:
            raise _fail(path, line, field, "is missing", f"add a non-empty string; {FORMATS}")
        return None
    value = rec[key]
    if not isinstance(value, str):
        raise _fail(path, line, field, f"is a {type(value).__name__}, not a string", "write it as a JSON string")
    if required and not value.strip():
        raise _fail(path, line, field, "is empty", "give it some text or drop the line")
    return value


def _from_messages(rec: dict, path: Path, line: int) -> dict:
    msgs = rec["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise _fail(path, line, "messages", "is not a non-empty list",
                    'use [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]')
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise _fail(path, line, f"messages[{i}]", "is not an object", 'use {"role": ..., "content": ...}')
        if m.get("role") not in ROLES:
            raise _fail(path, line, f"messages[{i}].role", f"is {m.get('role')!r}", f"use one of {list(ROLES)}")
        _text(m, "content", path, line, required=m["role"] != "system", where=f"messages[{i}].content")
    roles = [m["role"] for m in msgs]
    pairs = [i for i in range(1, len(msgs)) if roles[i] == "assistant" and roles[i - 1] == "user"]
    if pairs:
        user, answer = pairs[-1] - 1, msgs[pairs[-1]]["content"]
    elif "user" in roles:
        user, answer = len(roles) - 1 - roles[::-1].index("user"), None
    else:
        raise _fail(path, line, "messages", "has no user turn", 'add {"role": "user", "content": "..."}')
    systems = [m.get("content") for m in msgs[:user] if m["role"] == "system"]
    return {"prompt": msgs[user]["content"], "response": answer, "system": systems[-1] if systems else None}


def _parse(rec: object, path: Path, line: int) -> Sample:
    if not isinstance(rec, dict):
        raise _fail(path, line, "(line)", f"is a JSON {type(rec).__name__}, not an object", FORMATS)
    chat = "messages" in rec
    if chat and "prompt" in rec:
        raise _fail(path, line, "messages", "appears together with 'prompt'", "use one format per line")
    allowed = CHAT_FIELDS if chat else PAIR_FIELDS
    unknown = sorted(set(rec) - set(allowed))
    if unknown:
        raise _fail(path, line, unknown[0], "is not a known field", f"use only {list(allowed)}")
    if chat:
        fields = _from_messages(rec, path, line)
    else:
        fields = {"prompt": _text(rec, "prompt", path, line, required=True),
                  "response": _text(rec, "response", path, line, required=False),
                  "system": _text(rec, "system", path, line, required=False)}
    return Sample(**fields, **_optional(rec, path, line), source=path.stem)


def read_jsonl(path: str | Path) -> list[Sample]:
    """Samples from a user JSONL file (blank lines skipped); `DataValidationError` on any bad line."""
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: no such file. Fix: check the path; {FORMATS}.")
    out = []
    with path.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                raise _fail(path, line, "(line)", f"is not valid JSON ({e.msg} at column {e.colno})",
                            "write one complete JSON object per line") from None
            out.append(_parse(rec, path, line))
    if not out:
        raise DataValidationError(f"{path}: file is empty. Fix: {FORMATS}, one per line.")
    return out


def _record(item: dict | Sample) -> dict:
    if isinstance(item, Sample):
        rec = {k: getattr(item, k) for k in ("prompt", "response", "system", "harmful", "label")}
        rec = {k: v for k, v in rec.items() if v is not None}
        return {**rec, "meta": item.meta} if item.meta else rec
    return item


def write_jsonl(path: str | Path, records: list[dict | Sample]) -> Path:
    """Write one JSON object per line (Samples become the prompt/response format read_jsonl accepts)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for item in records:
            f.write(json.dumps(_record(item), ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_prompts(path: Path) -> list[Sample]:
    """A researcher's own harmful prompts: a `.jsonl` file (read as above, a `prompt` per line) or plain text,
    one prompt a line (blank lines skipped; each becomes a harmful `Sample` whose source is the file)."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file (expected one prompt a line, or JSONL with a 'prompt' field)")
    if path.suffix == ".jsonl":
        samples = read_jsonl(path)
    else:
        samples = [Sample(prompt=line.strip(), harmful=True, source=str(path))
                   for line in path.read_text().splitlines() if line.strip()]
    if not samples:
        raise ValueError(f"{path}: no prompts found")
    return samples
