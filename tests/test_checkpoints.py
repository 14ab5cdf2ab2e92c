"""sam_lab.weights: loading, saving, finding and downloading checkpoints, all offline.

Downloads are served by a local http.server on 127.0.0.1 that can honour Range requests,
ignore them, or drop the connection half way; it records every request it answers.
"""
from __future__ import annotations

import hashlib
import http.server
import logging
import os
import random
import re
import socket
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sam_lab.weights import download
from sam_lab.weights import io as checkpoint_io
from sam_lab.weights import (
    CHECKPOINTS,
    CheckpointError,
    DownloadError,
    download_checkpoint,
    find_checkpoint,
    identify_variant,
    load_checkpoint,
    save_checkpoint,
)
from sam_lab import build_sam


# ------------------------------------------------------------------ helpers

_PATCH = "image_encoder.patch_embed.proj.weight"


def assert_same_tensors(model, state_dict):
    ours = model.state_dict()
    assert set(ours) == set(state_dict)
    for key, tensor in state_dict.items():
        assert torch.equal(ours[key], tensor), key


def tiny_state_dict(seed=0):
    torch.manual_seed(seed)
    return build_sam("tiny").state_dict()


def shaped_like(variant):
    """A state dict with the keys and shapes of `variant`, costing almost no memory: built on
    the meta device, each tensor a zero broadcast to its shape (torch.save stores one number)."""
    with torch.device("meta"):
        meta = build_sam(variant).state_dict()
    return {key: torch.zeros(()).expand(value.shape) for key, value in meta.items()}


def meta_model(variant):
    with torch.device("meta"):
        return build_sam(variant)


class CodePayload:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class PlainObject:
    pass


# ------------------------------------------------------------------ loading and saving


def test_pth_state_dict_round_trips_into_fresh_model(tmp_path):
    state_dict = tiny_state_dict(seed=1)
    torch.save(state_dict, tmp_path / "tiny.pth")
    assert_same_tensors(load_checkpoint(build_sam("tiny"), tmp_path / "tiny.pth"), state_dict)


@pytest.mark.parametrize("name", ["tiny.safetensors", "tiny.pth"])
def test_save_checkpoint_round_trips_model_through_file(tmp_path, name):
    torch.manual_seed(2)
    model = build_sam("tiny")
    assert save_checkpoint(model, tmp_path / name) == tmp_path / name
    assert sorted(os.listdir(tmp_path)) == [name]  # no temporary file left behind
    assert_same_tensors(load_checkpoint(build_sam("tiny"), tmp_path / name), model.state_dict())


@pytest.mark.parametrize("wrapper", ["model", "state_dict"])
def test_state_dict_wrapped_under_model_or_state_dict_key_loads(tmp_path, wrapper):
    state_dict = tiny_state_dict(seed=3)
    torch.save({wrapper: state_dict, "epoch": 7}, tmp_path / "wrapped.pth")
    assert_same_tensors(load_checkpoint(build_sam("tiny"), tmp_path / "wrapped.pth"), state_dict)


def test_build_sam_checkpoint_argument_loads_the_file(tmp_path):
    state_dict = tiny_state_dict(seed=4)
    save_checkpoint(state_dict, tmp_path / "tiny.safetensors")
    assert_same_tensors(build_sam("tiny", checkpoint=str(tmp_path / "tiny.safetensors")), state_dict)


def test_reference_vit_b_weights_load_strictly_into_our_vit_b(tmp_path):
    import segment_anything

    torch.manual_seed(5)
    reference = segment_anything.sam_model_registry["vit_b"]().state_dict()
    torch.save(reference, tmp_path / "sam_vit_b.pth")  # the layout of Meta's released file
    model = load_checkpoint(build_sam("vit_b"), tmp_path / "sam_vit_b.pth", strict=True)
    assert_same_tensors(model, reference)  # same keys: none missing, none unexpected


@pytest.mark.parametrize(
    "file_variant, model_variant, message",
    [
        ("vit_l", "vit_b", "this file holds vit_l weights (embed 1024, 24 blocks); "
                           "the model is vit_b (embed 768, 12 blocks)"),
        ("vit_b", "vit_h", "this file holds vit_b weights (embed 768, 12 blocks); "
                           "the model is vit_h (embed 1280, 32 blocks)"),
        ("vit_b", "tiny", "the model is tiny (embed 96, 4 blocks)"),
        ("tiny", "vit_b", "this file holds custom-size weights (embed 96, 4 blocks)"),
    ],
)
def test_checkpoint_of_another_variant_is_named_in_the_error(tmp_path, file_variant, model_variant, message):
    path = tmp_path / f"{file_variant}.pth"
    torch.save(shaped_like(file_variant), path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(meta_model(model_variant), path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "variant, expected",
    [("vit_b", "vit_b"), ("vit_l", "vit_l"), ("vit_h", "vit_h"), ("tiny", "custom (embed 96, 4 blocks)")],
)
def test_identify_variant_names_released_sizes_and_describes_others(variant, expected):
    state_dict = shaped_like(variant)
    assert identify_variant(state_dict) == expected
    assert identify_variant({"model": state_dict}) == expected


def test_identify_variant_rejects_a_state_dict_without_image_encoder():
    with pytest.raises(ValueError, match="not a SAM state dict"):
        identify_variant({"mask_decoder.iou_token.weight": torch.zeros(1, 64)})


def test_missing_and_unexpected_keys_are_listed_with_counts(tmp_path):
    state_dict = tiny_state_dict()
    removed = [key for key in state_dict if key.startswith("mask_decoder.")][:12]
    for key in removed:
        del state_dict[key]
    state_dict.update({f"extra.{i}": torch.zeros(1) for i in range(3)})
    torch.save(state_dict, tmp_path / "odd.pth")

    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(build_sam("tiny"), tmp_path / "odd.pth")
    message = str(caught.value)
    assert str(tmp_path / "odd.pth") in message
    assert "12 missing keys" in message and "3 unexpected keys" in message
    assert all(key in message for key in removed[:10]) and removed[10] not in message
    assert "... and 2 more" in message
    assert all(f"extra.{i}" in message for i in range(3))
    # strict=False tolerates both, and loads every tensor the file does have
    model = load_checkpoint(build_sam("tiny"), tmp_path / "odd.pth", strict=False)
    assert torch.equal(model.state_dict()[_PATCH], state_dict[_PATCH])


@pytest.mark.parametrize("strict", [True, False])
def test_shape_mismatches_are_listed_even_when_not_strict(tmp_path, strict):
    state_dict = tiny_state_dict()
    state_dict["mask_decoder.iou_token.weight"] = torch.zeros(1, 32)
    torch.save(state_dict, tmp_path / "shapes.pth")
    with pytest.raises(CheckpointError, match=r"1 shape mismatches:\n.*iou_token.weight: "
                                              r"file \(1, 32\), model \(1, 64\)"):
        load_checkpoint(build_sam("tiny"), tmp_path / "shapes.pth", strict=strict)


def test_file_that_is_not_a_state_dict_is_rejected(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        load_checkpoint(build_sam("tiny"), tmp_path / "list.pth")


def _half(data):
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "suffix, legacy, damage",
    [
        (".pth", False, _half),  # zip format, cut in half
        (".pth", True, _half),  # the pre-1.6 pickle stream format, cut in half
        (".pth", False, lambda data: random.Random(0).randbytes(4096)),
        (".pth", False, lambda data: b""),
        (".safetensors", False, _half),
        (".safetensors", False, lambda data: random.Random(0).randbytes(4096)),
        (".safetensors", False, lambda data: b""),
    ],
    ids=["pth-half", "legacy-pth-half", "pth-random", "pth-empty",
         "safetensors-half", "safetensors-random", "safetensors-empty"],
)
def test_truncated_or_corrupt_file_says_so_and_suggests_download(tmp_path, suffix, legacy, damage):
    path = tmp_path / f"broken{suffix}"
    if suffix == ".pth":
        torch.save(tiny_state_dict(), path, _use_new_zipfile_serialization=not legacy)
    else:
        save_checkpoint(tiny_state_dict(), path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match="truncated or corrupt") as caught:
        load_checkpoint(build_sam("tiny"), path)
    assert str(path) in str(caught.value) and "download it again" in str(caught.value)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_pickle_carrying_code_is_refused_without_running_it(tmp_path, legacy):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": CodePayload(marker)}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match="contains code or objects that are not plain tensors") as caught:
        load_checkpoint(build_sam("tiny"), path)
    message = str(caught.value)
    assert "system" in message and "nothing in it was executed" in message and str(path) in message
    assert not marker.exists()


def test_code_payload_above_really_runs_when_unpickled_unsafely(tmp_path):
    # proves the refusal test would notice if the code had run
    marker = tmp_path / "code_ran"
    torch.save({"model": CodePayload(marker)}, tmp_path / "evil.pth")
    torch.load(tmp_path / "evil.pth", weights_only=False)
    assert marker.exists()


def test_pickled_object_of_some_class_is_refused(tmp_path):
    torch.save({"model": PlainObject()}, tmp_path / "object.pth")
    with pytest.raises(CheckpointError, match=r"not plain tensors.*PlainObject"):
        load_checkpoint(build_sam("tiny"), tmp_path / "object.pth")


def test_missing_file_raises_file_not_found_naming_the_path(tmp_path):
    path = tmp_path / "nowhere" / "sam_vit_b_01ec64.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_checkpoint(build_sam("tiny"), path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        build_sam("tiny", checkpoint=str(path))


def test_save_checkpoint_failing_half_way_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "tiny.pth"
    save_checkpoint(tiny_state_dict(seed=1), path)
    before = path.read_bytes()

    def broken_save(obj, target):
        Path(target).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_io.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tiny_state_dict(seed=2), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["tiny.pth"]  # the temporary file was removed


# ------------------------------------------------------------------ the table and finding files


def test_official_checkpoint_table():
    expected = {
        "vit_h": ("sam_vit_h_4b8939.pth", 2_564_550_879, "4b8939a88964f0f4ff5f5b2642c598a6"),
        "vit_l": ("sam_vit_l_0b3195.pth", 1_249_524_607, "0b3195507c641ddb6910d2bb5adee89c"),
        "vit_b": ("sam_vit_b_01ec64.pth", 375_042_383, "01ec64d29a2fca3f0661936605ae66f8"),
    }
    for variant, (filename, size, md5) in expected.items():
        info = CHECKPOINTS[variant]
        assert (info.filename, info.size, info.md5) == (filename, size, md5)
        assert info.url == "https://dl.fbaipublicfiles.com/segment_anything/" + filename
        assert info.hash_prefix == md5[:6]  # the name carries the MD5's first six digits
        assert info.sha256 is None or len(info.sha256) == 64


def test_find_checkpoint_looks_in_folder_then_env_then_home_cache(tmp_path, monkeypatch):
    name = CHECKPOINTS["vit_b"].filename
    home, env, folder = tmp_path / "home", tmp_path / "env", tmp_path / "folder"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SAM_LAB_CHECKPOINTS", raising=False)
    assert find_checkpoint("vit_b") is None

    cached = home / ".cache" / "sam_lab" / "checkpoints" / name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert find_checkpoint("vit_b") == cached

    (env / name).parent.mkdir()
    (env / name).write_bytes(b"x")
    monkeypatch.setenv("SAM_LAB_CHECKPOINTS", str(env))
    assert find_checkpoint("vit_b") == env / name

    folder.mkdir()
    assert find_checkpoint("vit_b", folder) is None  # an explicit folder is the only place looked
    (folder / name).write_bytes(b"x")
    assert find_checkpoint("vit_b", folder) == folder / name
    assert find_checkpoint("vit_l", folder) is None


# ------------------------------------------------------------------ downloading

PAYLOAD = random.Random(42).randbytes(3 * 2**20 + 12345)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
CHUNK = 64 * 1024


class FileHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /sam.pth as the server's settings say; 404 elsewhere."""

    def do_GET(self):
        server = self.server
        if self.path != "/sam.pth":
            self.send_error(404)
            return
        asked = self.headers.get("Range")
        server.ranges.append(asked)
        start = 0
        if asked and server.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1))
            if start >= len(PAYLOAD):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.drops > 0:  # send half, then hang up
            server.drops -= 1
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)
        server.sent.append(len(body))

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve(honour_range=True, drops=0) -> a running server with .url, .ranges and .sent."""
    servers = []

    def start(honour_range=True, drops=0):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FileHandler)
        server.honour_range, server.drops, server.ranges, server.sent = honour_range, drops, [], []
        server.url = f"http://127.0.0.1:{server.server_address[1]}/sam.pth"
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def fetch(server, dest, **kwargs):
    kwargs.setdefault("sha256", PAYLOAD_SHA256)
    return download_checkpoint("vit_b", dest, url=server.url, progress=False, chunk_size=CHUNK, **kwargs)


def test_download_fetches_whole_file_and_verifies_sha256(tmp_path, serve):
    server = serve()
    path = fetch(server, tmp_path / "model.pth")
    assert path == tmp_path / "model.pth" and path.read_bytes() == PAYLOAD
    assert server.ranges == [None] and server.sent == [len(PAYLOAD)]
    assert os.listdir(tmp_path) == ["model.pth"]  # the .part file became the checkpoint


def test_download_resumes_partial_part_file_with_range_request(tmp_path, serve):
    server = serve()
    have = 1_000_000
    (tmp_path / "model.pth.part").write_bytes(PAYLOAD[:have])
    path = fetch(server, tmp_path / "model.pth")
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={have}-"]
    assert server.sent == [len(PAYLOAD) - have]  # only the remaining bytes crossed the wire


def test_dropped_connection_keeps_part_file_and_next_call_resumes(tmp_path, serve):
    server = serve(drops=1)
    with pytest.raises(DownloadError, match=re.escape(server.url)):
        fetch(server, tmp_path / "model.pth", retries=0)
    part = tmp_path / "model.pth.part"
    half = len(PAYLOAD) // 2
    assert part.read_bytes() == PAYLOAD[:half] and not (tmp_path / "model.pth").exists()

    assert fetch(server, tmp_path / "model.pth").read_bytes() == PAYLOAD
    assert server.ranges == [None, f"bytes={half}-"]
    assert server.sent == [half, len(PAYLOAD) - half]


def test_dropped_connection_is_resumed_within_the_same_call(tmp_path, serve):
    server = serve(drops=1)
    assert fetch(server, tmp_path / "model.pth").read_bytes() == PAYLOAD
    assert server.ranges == [None, f"bytes={len(PAYLOAD) // 2}-"]


def test_server_ignoring_range_makes_download_start_over(tmp_path, serve):
    server = serve(honour_range=False)
    (tmp_path / "model.pth.part").write_bytes(b"\0" * 500_000)  # would corrupt the file if kept
    assert fetch(server, tmp_path / "model.pth").read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=500000-"] and server.sent == [len(PAYLOAD)]


def test_complete_part_file_is_verified_without_fetching_more(tmp_path, serve):
    server = serve()
    (tmp_path / "model.pth.part").write_bytes(PAYLOAD)
    assert fetch(server, tmp_path / "model.pth").read_bytes() == PAYLOAD
    assert server.sent == []  # the server answered 416: nothing left to send


def test_hash_mismatch_removes_file_and_raises(tmp_path, serve):
    server = serve()
    with pytest.raises(CheckpointError, match=f"sha256 is {PAYLOAD_SHA256}.*removed"):
        fetch(server, tmp_path / "model.pth", sha256="0" * 64)
    assert os.listdir(tmp_path) == []


OFFICIAL_VIT_B = CHECKPOINTS["vit_b"]


def patch_table(monkeypatch, **changes):
    """Replace CHECKPOINTS["vit_b"] for this test by the official entry with `changes`."""
    monkeypatch.setitem(CHECKPOINTS, "vit_b", replace(OFFICIAL_VIT_B, **changes))


def test_official_file_is_verified_by_full_md5_and_its_sha256_logged(tmp_path, serve, monkeypatch, caplog):
    server = serve()
    patch_table(monkeypatch, md5=PAYLOAD_MD5)  # the official name, whose prefix 01ec64 is not ours
    assert not PAYLOAD_MD5.startswith("01ec64")
    with caplog.at_level(logging.INFO, logger="sam_lab.weights.download"):
        path = fetch(server, tmp_path, sha256=None)
    assert path == tmp_path / "sam_vit_b_01ec64.pth" and path.read_bytes() == PAYLOAD
    assert PAYLOAD_SHA256 in caplog.text and "md5 verified" in caplog.text

    assert fetch(server, tmp_path, sha256=None) == path  # the file on disk verifies by md5 too
    assert len(server.ranges) == 1


def test_md5_mismatch_removes_file_and_raises(tmp_path, serve):
    server = serve()  # the table's real md5 for vit_b, which PAYLOAD does not have
    with pytest.raises(CheckpointError, match=f"md5 is {PAYLOAD_MD5}; expected md5 "
                                              f"{OFFICIAL_VIT_B.md5}.*removed"):
        fetch(server, tmp_path, sha256=None)
    assert os.listdir(tmp_path) == []


def test_sha256_takes_precedence_over_md5(tmp_path, serve, monkeypatch):
    server = serve()
    # an explicit sha256 is used even though the table's md5 does not match PAYLOAD ...
    assert fetch(server, tmp_path / "a.pth", sha256=PAYLOAD_SHA256).read_bytes() == PAYLOAD
    # ... and a wrong one fails even though the md5 would match
    patch_table(monkeypatch, md5=PAYLOAD_MD5)
    with pytest.raises(CheckpointError, match=f"sha256 is {PAYLOAD_SHA256}; expected sha256 0{{64}}"):
        fetch(server, tmp_path / "b.pth", sha256="0" * 64)
    # the table's sha256, when recorded, comes before its md5
    patch_table(monkeypatch, md5="0" * 32, sha256=PAYLOAD_SHA256)
    assert fetch(server, tmp_path / "c.pth", sha256=None).read_bytes() == PAYLOAD
    assert sorted(os.listdir(tmp_path)) == ["a.pth", "c.pth"]


def test_download_hashes_the_file_once_for_both_digests(tmp_path, serve, monkeypatch):
    server = serve()
    calls, real_hashes = [], download._hashes

    def counting_hashes(path):
        calls.append(path)
        return real_hashes(path)

    monkeypatch.setattr(download, "_hashes", counting_hashes)
    patch_table(monkeypatch, md5=PAYLOAD_MD5)
    fetch(server, tmp_path, sha256=None)
    assert len(calls) == 1
    assert real_hashes(tmp_path / "sam_vit_b_01ec64.pth") == {"sha256": PAYLOAD_SHA256, "md5": PAYLOAD_MD5}


def test_without_full_hash_the_file_name_md5_prefix_is_checked(tmp_path, serve, monkeypatch):
    server = serve()
    patch_table(monkeypatch, filename=f"sam_vit_b_{PAYLOAD_MD5[:6]}.pth", md5=None)
    assert fetch(server, tmp_path, sha256=None).read_bytes() == PAYLOAD

    patch_table(monkeypatch, filename="sam_vit_b_000000.pth", md5=None)
    with pytest.raises(CheckpointError, match="expected md5 prefix 000000"):
        fetch(server, tmp_path, sha256=None)
    assert not (tmp_path / "sam_vit_b_000000.pth").exists()


def test_dest_folder_gets_official_name_and_dest_file_is_used_as_is(tmp_path, serve):
    server = serve()
    official = CHECKPOINTS["vit_b"].filename
    assert fetch(server, tmp_path) == tmp_path / official
    assert fetch(server, str(tmp_path / "new") + "/") == tmp_path / "new" / official
    assert fetch(server, tmp_path / "sub" / "mine.pth") == tmp_path / "sub" / "mine.pth"
    assert (tmp_path / "sub" / "mine.pth").read_bytes() == PAYLOAD


def test_second_call_does_not_download_again(tmp_path, serve):
    server = serve()
    first = fetch(server, tmp_path)
    assert fetch(server, tmp_path) == first
    assert len(server.ranges) == 1


def test_existing_file_with_wrong_hash_is_downloaded_again(tmp_path, serve):
    server = serve()
    (tmp_path / "model.pth").write_bytes(b"not the checkpoint")
    with pytest.warns(UserWarning, match="does not match"):
        assert fetch(server, tmp_path / "model.pth").read_bytes() == PAYLOAD


def test_bad_variant_name_lists_choices(tmp_path):
    with pytest.raises(ValueError, match=r"variant: .*'vit_b'.*'vit_h'.*'vit_l'.*got 'vit_x'"):
        download_checkpoint("vit_x", tmp_path)
    with pytest.raises(ValueError, match="variant"):
        find_checkpoint("vit_x")


def test_network_errors_name_the_url(tmp_path, serve):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/sam.pth"
    with pytest.raises(DownloadError, match=re.escape(closed)):
        download_checkpoint("vit_b", tmp_path, url=closed, progress=False, retries=0)

    missing = serve().url.replace("sam.pth", "gone.pth")
    with pytest.raises(DownloadError, match=re.escape(missing) + ".*404"):
        download_checkpoint("vit_b", tmp_path, url=missing, progress=False)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["m.safetensors", "m.pth"])
def test_saved_checkpoints_get_the_mode_the_umask_gives_plain_files(tmp_path, name):
    previous = os.umask(0o022)
    try:
        save_checkpoint(tiny_state_dict(), tmp_path / name)
    finally:
        os.umask(previous)
    assert (tmp_path / name).stat().st_mode & 0o777 == 0o644  # safetensors alone would give 0o600

