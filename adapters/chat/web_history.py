"""The web chat's memory: the room's recent messages survive a gateway restart.

An append-only JSON-lines file under `<data_dir>/web/history.jsonl`: one line per new or
edited message (`put`, latest wins) and per image (`image`: its id and host path), replayed
at start and rewritten compactly when it grows past a few times the kept history. A job's
progress message is therefore still edited in place after a restart, and people who open
the page later see the conversation.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

log = logging.getLogger("hammer.chat.web")


class WebHistory:
    def __init__(self, path: Path, keep: int) -> None:
        self.path = path
        self.keep = keep
        self.records: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.images: dict[str, str] = {}
        self._lines = 0
        self._lock = asyncio.Lock()

    def load(self) -> int:
        """Replay the file; returns the highest numeric id seen (ids continue after it)."""
        highest = 0
        if not self.path.exists():
            return highest
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
                if entry["op"] == "put":
                    rec = entry["record"]
                    self.records[rec["id"]] = rec
                elif entry["op"] == "image":
                    self.images[entry["id"]] = entry["path"]
                else:
                    continue
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line after a crash: skip it, keep the rest
            self._lines += 1
            ident = entry["record"]["id"] if entry["op"] == "put" else entry["id"]
            if ident[1:].isdigit():
                highest = max(highest, int(ident[1:]))
        while len(self.records) > self.keep:
            self.records.popitem(last=False)
        return highest

    async def put(self, record: dict[str, Any]) -> None:
        if record["id"] not in self.records and len(self.records) >= self.keep:
            self.records.popitem(last=False)
        self.records[record["id"]] = record
        await self._append({"op": "put", "record": record})

    async def image(self, image_id: str, path: Path) -> None:
        self.images[image_id] = str(path)
        await self._append({"op": "image", "id": image_id, "path": str(path)})

    async def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        async with self._lock:
            self._lines += 1
            # Compaction writes a snapshot taken here, on the loop: the thread never reads
            # `records` while `put()` changes it.
            snapshot = self._snapshot() if self._lines > 4 * self.keep + 100 else None
            try:
                await asyncio.to_thread(self._write, line, snapshot)
            except OSError as exc:
                log.warning("web chat history not saved (%s); it stays in memory", exc)
            if snapshot is not None:
                self._lines = len(snapshot)

    def _snapshot(self) -> list[str]:
        live = {str(rec.get("msg", {}).get("image", "")) for rec in self.records.values()}
        lines = [json.dumps({"op": "image", "id": image_id, "path": path}) + "\n"
                 for image_id, path in self.images.items() if f"/web/images/{image_id}" in live]
        lines += [json.dumps({"op": "put", "record": rec}, ensure_ascii=False) + "\n" for rec in self.records.values()]
        return lines

    def _write(self, line: str, snapshot: list[str] | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if snapshot is None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)
            return
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(snapshot)
        tmp.replace(self.path)
