"""Nothing the gateway copies, lists, reads or tests on the host follows a symbolic link out
of a job's output."""

from __future__ import annotations

import os
from pathlib import Path

from gateway import safe_copy


def _hostile(tmp: Path) -> Path:
    out = tmp / "output"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "adapter_config.json").write_text("{}")
    secret = tmp / "host-secret"
    secret.write_text("host data")
    (tmp / "host-dir").mkdir()
    (tmp / "host-dir" / "key").write_text("host key")
    os.symlink(secret, out / "leak.txt")
    os.symlink(tmp / "host-dir", out / "dir")
    os.mkfifo(out / "fifo")
    return out


def test_copy_tree_drops_links_and_special_files(tmp_path: Path) -> None:
    out = _hostile(tmp_path)
    report = safe_copy.copy_tree(out, tmp_path / "copy")
    assert sorted(report.skipped) == ["dir", "fifo", "leak.txt"] and report.files == 1
    assert [p.relative_to(tmp_path / "copy").as_posix() for p in (tmp_path / "copy").rglob("*")] == \
        ["sub", "sub/adapter_config.json"]
    assert safe_copy.copy_tree(tmp_path / "output" / "dir", tmp_path / "via-link").skipped == ["dir"]


def test_listing_reading_and_testing_never_go_through_a_link(tmp_path: Path) -> None:
    out = _hostile(tmp_path)
    assert safe_copy.regular_files(out) == [("sub/adapter_config.json", 2)]
    assert safe_copy.read_regular(out / "leak.txt") is None and safe_copy.read_regular(out / "fifo") is None
    assert safe_copy.read_regular(out / "sub" / "adapter_config.json") == b"{}"
    assert safe_copy.kind(out / "dir") is None and safe_copy.kind(out / "sub") == "dir"
    assert not safe_copy.is_regular_file(out / "leak.txt")
    assert not safe_copy.inside(out / "dir" / "key", out) and safe_copy.inside(out / "sub" / "x", out)


def test_a_linked_demo_model_in_the_cache_counts_as_missing(tmp_path: Path) -> None:
    from adapters.cloud.docker.container import cache_writable
    from gateway.model import JobSpec
    spec = JobSpec(id="j", task="sft", model="demo", params={"prepare": ["demo_model:/cache/models/demo"]})
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "config.json").write_text("{}")
    (tmp_path / "cache" / "models").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere", tmp_path / "cache" / "models" / "demo")
    assert cache_writable(spec, tmp_path / "cache")  # not taken as built: the next demo job rebuilds it
