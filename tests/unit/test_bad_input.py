"""The grammars every value passes before it can reach nginx's config, a URL or a process:
ports, hosts, backend URLs, flags, `.env` bytes, rehearsal profiles, rendered templates."""

from __future__ import annotations

import contextlib
import io
from dataclasses import replace
from pathlib import Path

import pytest

from vrm_tui import cli
from vrm_tui.core import address
from vrm_tui.core.errors import BadInput, CorpusError, ProfileError, SettingsError
from vrm_tui.core.split import Split
from vrm_tui.rehearsal.profile import load_profile
from vrm_tui.settings import load
from vrm_tui.traffic import nginx
from vrm_tui.traffic.fake import FakeProxyHost

INJECTIONS = ["http://127.0.0.1:25001;#", "http://x}{:1", "a'b", "h$host:1", "http://h$host:1",
              "http://h:1/ ; x", "http://user@h:1", "http://h:1/path", "http://h:1?q=1",
              "http://h:1#frag", "http://h :1", "http://h:1 weight=99", "ftp://h:1",
              "http://h:0", "http://h:65536", "http://h:٣٠٠١", "http://h:3_001", "http://-h:1",
              "http://h-.x:1", "http://[fe80::1%eth0]:1", "http://[::1:1", "http://999.1.1.1:1",
              "http://" + "a" * 64 + ":1", "http://h\n:1", "http://h:1\nserver evil:1;"]


@pytest.mark.parametrize("raw", INJECTIONS)
def test_backend_urls_outside_the_grammar_are_refused(raw: str, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="RUST_BACKEND_URL="):
        address.parse_backend_url("RUST_BACKEND_URL", raw)
    with pytest.raises(SettingsError) as caught:
        load(environ={"RUST_BACKEND_URL": raw}, deploy_dir=tmp_path)
    assert "\n" not in str(caught.value).replace("\\n", "")


@pytest.mark.parametrize(("raw", "url", "hostport"), [
    ("http://10.0.0.5:8080/", "http://10.0.0.5:8080", "10.0.0.5:8080"),
    ("https://Ts.Internal", "https://ts.internal:443", "ts.internal:443"),
    ("http://[::1]:3002", "http://[::1]:3002", "[::1]:3002"),
    ("http://[2001:DB8::0001]", "http://[2001:db8::1]:80", "[2001:db8::1]:80"),
    ("  http://vision-manager-rust:3001  ", "http://vision-manager-rust:3001",
     "vision-manager-rust:3001"),
])
def test_good_backend_urls_are_rebuilt_from_their_parts(raw: str, url: str, hostport: str,
                                                        tmp_path: Path) -> None:
    parsed = address.parse_backend_url("TS_BACKEND_URL", raw)
    assert (str(parsed), str(parsed.address)) == (url, hostport)
    s = load(environ={"TS_BACKEND_URL": raw}, deploy_dir=tmp_path)
    assert (s.backend_url("typescript"), s.ts_address) == (url, hostport)


@pytest.mark.parametrize("raw", ["", "h", "h:", ":1", "h:0", "h:99999", "h:-1", "::1:3000",
                                 "[::1]", "h:1:2", "a b:1", "h;:1", "h:١"])
def test_host_port_grammar(raw: str) -> None:
    with pytest.raises(BadInput, match="--host="):
        address.parse_hostport("--host", raw)


def test_host_port_accepts_names_and_both_address_families() -> None:
    assert str(address.parse_hostport("h", "LocalHost:3000")) == "localhost:3000"
    assert str(address.parse_hostport("h", "[::1]:1")) == "[::1]:1"
    assert str(address.parse_hostport("h", "127.0.0.1:65535")) == "127.0.0.1:65535"


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("PROXY_PORT", "٥٠", "PROXY_PORT='٥٠'"),
    ("PROXY_PORT", "1_000", "PROXY_PORT='1_000'"),
    ("RUST_BACKEND_WEIGHT", "٥٠", "RUST_BACKEND_WEIGHT='٥٠'"),
    ("RUST_BACKEND_WEIGHT", "1_0", "RUST_BACKEND_WEIGHT='1_0'"),
    ("MAX_VRAM_GB", "1_0", "MAX_VRAM_GB='1_0'"),
    ("MAX_VRAM_GB", "inf", "MAX_VRAM_GB='inf'"),
    ("PROXY_RATE_LIMIT", "１００", "PROXY_RATE_LIMIT="),
    ("GRAFANA_PORT", "3000", "GRAFANA_PORT=3000: the same port as PROXY_PORT"),
    ("PROXY_BIND", "fe80::1%eth0", "scoped IPv6"),
    ("VRM_STATE_DIR", "/dev/null", "not a directory"),
    ("VRM_STATE_DIR", "/tmp/a;b", "may not contain"),
    ("VRM_STATE_DIR", "/tmp/a b", "may not contain"),
])
def test_values_that_int_or_float_would_take_are_refused(tmp_path: Path, variable: str,
                                                         value: str, named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(environ={variable: value}, deploy_dir=tmp_path)
    assert named in str(caught.value)


def test_a_state_dir_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SettingsError, match="which is not a directory"):
        load(environ={"VRM_STATE_DIR": str(tmp_path / "file" / "state")}, deploy_dir=tmp_path)


def test_env_file_that_is_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"PROXY_PORT=3000\nGRAFANA_PASSWORD=\xff\xfe\n")
    with pytest.raises(SettingsError, match=r"\.env:2: not valid UTF-8"):
        load(environ={}, deploy_dir=tmp_path)
    (tmp_path / ".env").write_bytes(b"GRAFANA_PASSWORD=a\x00b\n")
    with pytest.raises(SettingsError, match=r"\.env:1: contains a control character"):
        load(environ={}, deploy_dir=tmp_path)


def _main(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(list(argv))
    return code, err.getvalue()


@pytest.mark.parametrize("argv", [
    ["journal", "-n", "-5"], ["journal", "-n", "٥"], ["logs", "-n", "1_0"],
    ["validate", "--host", ""], ["validate", "--host", "127.0.0.1:0"],
    ["validate", "--host", "h:99999"], ["validate", "--speedup", "nan"],
    ["benchmark", "--rate", "inf"], ["benchmark", "--rate", "nan"],
    ["benchmark", "--duration", "-1"], ["benchmark", "--requests", "٥"],
    ["deploy", "--rust-weight", "٥٠"], ["deploy", "--rust-weight", "1_0"],
    ["migrate", "--steps", "١٠,٥٠"], ["migrate", "--bake", "inf"], ["no-such-command"],
    ["deploy", "--no-such-flag"],
])
def test_bad_flags_exit_2_with_one_line(tmp_path: Path, argv: list[str]) -> None:
    code, err = _main(*argv, "--deploy-dir", str(tmp_path))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / ".vrm" / "run").exists()


@pytest.mark.parametrize("argv", [["--read-only", "deploy"], ["deploy", "--read-only"],
                                  ["rollback", "--read-only"], ["up", "--read-only"],
                                  ["down", "--read-only"], ["reload", "--read-only"],
                                  ["migrate", "--read-only"], ["migrate", "abort", "--read-only"],
                                  ["benchmark", "--read-only"], ["setup", "--read-only"]])
def test_read_only_refuses_every_writing_command(tmp_path: Path, argv: list[str]) -> None:
    code, err = _main(*argv, "--deploy-dir", str(tmp_path))
    assert code == 2 and "--read-only" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / ".env").exists() and not (tmp_path / ".vrm").exists()


def test_read_only_allows_reading_commands(tmp_path: Path) -> None:
    code, err = _main("journal", "--read-only", "--deploy-dir", str(tmp_path))
    assert (code, err) == (0, "")
    code, err = _main("migrate", "status", "--read-only", "--deploy-dir", str(tmp_path))
    assert (code, err) == (0, "")


def test_state_dir_flag_that_is_a_file_exits_2(tmp_path: Path) -> None:
    code, err = _main("deploy", "--state-dir", "/dev/null", "--deploy-dir", str(tmp_path))
    assert code == 2 and "'/dev/null': is not a directory" in err


# --- rendering: the last line of defence ---------------------------------------------------


def test_render_upstream_rebuilds_addresses_and_refuses_injection() -> None:
    text = nginx.render_upstream(Split(20), 3, "127.0.0.1:25001", "[::1]:25002")
    assert "server 127.0.0.1:25001 weight=20 max_fails=0" in text
    assert "server [::1]:25002 weight=80" in text
    for bad in ("127.0.0.1:25001;#", "127.0.0.1:1 weight=99", "x}{:1", "h$host:1", "a'b:1"):
        with pytest.raises(BadInput, match="rust upstream address"):
            nginx.render_upstream(Split(20), 3, bad, "127.0.0.1:2")


def test_render_main_checks_every_value(tmp_path: Path) -> None:
    params = FakeProxyHost(tmp_path).proxy_params()
    assert "listen" in nginx.render_main(params)
    for bad in (replace(params, listen="127.0.0.1:80; include /etc/passwd"),
                replace(params, status_listen="0.0.0.0:1 #"),
                replace(params, access_log=tmp_path / "a;b"),
                replace(params, pid_file=Path("relative.pid")),
                replace(params, temp_dir=tmp_path / "a{b"),
                replace(params, rate_limit=-1),
                replace(params, client_keepalive_timeout=10**9),
                replace(params, status_allow=("127.0.0.1; allow all",))):
        with pytest.raises(BadInput):
            nginx.render_main(bad)


# --- rehearsal profiles ---------------------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"\xff\xfe", b"backend: rust\nlatency_ms: [1, 2]\n", b"- a\n- b\n", b"backend: [rust\n",
    b"backend: rust\nlatency_ms: {metrics: {median: .inf}}\n",
    b"backend: rust\nlatency_ms: {metrics: {median: 1}}\nvolatile_fields: [{a: 1}]\n",
    b"backend: rust\nlatency_ms: {metrics: {median: 1}}\ndivergence_path: {a: 1}\n",
    b"backend: {a: 1}\nlatency_ms: {metrics: {median: 1}}\n",
    b"backend: rust\nlatency_ms: {metrics: {median: 1}}\nmodels: 3\n",
    b"backend: rust\nlatency_ms:\n  ? |\n    multi\n    line\n  : 3\n",
    b"key: 'unterminated\n\n\n",
])
def test_bad_profiles_are_one_line_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "rust.yaml"
    path.write_bytes(content)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message, message


def test_status_allow_takes_addresses_and_networks(tmp_path: Path) -> None:
    params = replace(FakeProxyHost(tmp_path).proxy_params(),
                     status_allow=("127.0.0.1", "::1", "172.30.7.0/24"))
    assert "allow 127.0.0.1; allow ::1; allow 172.30.7.0/24;" in nginx.render_main(params)


# --- issue 19 item 9: values past Python's limits, odd files, odd paths ----------------------

HUGE = "9" * 5000  # past Python's int-string limit (4300 digits): int() raises ValueError


@pytest.mark.parametrize("variable", ["RUST_BACKEND_WEIGHT", "PROXY_PORT",
                                      "TS_VISION_MANAGER_PORT", "PROXY_RATE_LIMIT"])
def test_a_huge_number_in_a_variable_is_one_short_line(tmp_path: Path, variable: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load(environ={variable: HUGE}, deploy_dir=tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{variable}='999") and "5000 characters" in message, message
    assert len(message) < 200, message


def _plan(tmp_path: Path, text: str) -> str:
    (tmp_path / "plan.yaml").write_text(text)
    return str(tmp_path / "plan.yaml")


def _corpus(tmp_path: Path, data: bytes) -> str:
    (tmp_path / "corpus.yaml").write_bytes(data)
    return str(tmp_path / "corpus.yaml")


@pytest.mark.parametrize(("argv", "named"), [
    (["deploy", "--rust-weight", HUGE], "--rust-weight='999"),
    (["migrate", "--steps", HUGE, "--yes"], "--steps='999"),
    (["migrate", "--steps", f"10,{HUGE}", "--yes"], "--steps='10,999"),
    (["validate", "--host", f"127.0.0.1:{HUGE}"], "--host='127.0.0.1:999"),
    (["migrate", "--plan", "{plan}", "--yes"], "plan.yaml"),
    (["benchmark", "--requests-file", "{corpus}"], "corpus.yaml"),
    (["benchmark", "--requests", HUGE], "--requests"),
    (["journal", "-n", HUGE], "--lines"),
])
def test_a_huge_number_in_a_flag_or_file_exits_2_with_one_short_line(
        tmp_path: Path, argv: list[str], named: str) -> None:
    plan = _plan(tmp_path, f"steps: [10, 50]\nmin_samples: {HUGE}\n")
    corpus = _corpus(tmp_path, f"requests:\n- path: /x\n  weight: {HUGE}\n".encode())
    argv = [a.format(plan=plan, corpus=corpus) for a in argv]
    code, err = _main(*argv, "--deploy-dir", str(tmp_path))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and named in err, err
    assert len(err) < 300, err


def test_a_plan_and_a_corpus_name_the_huge_numbers_line(tmp_path: Path) -> None:
    from vrm_tui.core import corpus
    from vrm_tui.migrate import plan

    path = Path(_plan(tmp_path, f"steps: [10, 50]\nmin_samples: {HUGE}\n"))
    with pytest.raises(BadInput, match=r"plan\.yaml.*line 2.*digits"):
        plan.load(path)
    path = Path(_corpus(tmp_path, f"requests:\n- path: /x\n  weight: {HUGE}\n".encode()))
    with pytest.raises(CorpusError, match=r"corpus\.yaml.*line 3.*digits"):
        corpus.load(path)


def test_a_requests_file_that_is_not_utf8_names_file_and_byte(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path, b"requests:\n- path: /caf\xe9\n")
    code, err = _main("benchmark", "--requests-file", corpus, "--deploy-dir", str(tmp_path))
    assert code == 2 and f"{corpus}: not valid UTF-8" in err, err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("output", ["missing/corpus.yaml", "/", "."])
def test_capture_output_that_cannot_be_a_file_exits_2_before_reading(
        tmp_path: Path, output: str) -> None:
    code, err = _main("capture", "-o", output, "--deploy-dir", str(tmp_path))
    assert code == 2, err
    assert "-o" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / ".vrm").exists()


def _loop(tmp_path: Path) -> Path:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    return loop


@pytest.mark.parametrize("state", ["/tmp/" + "s" * 5000, "/tmp/" + "/".join(["s" * 200] * 30),
                                   "{loop}", "{loop}/state"])
def test_a_state_dir_the_os_cannot_name_exits_2(tmp_path: Path, state: str) -> None:
    state = state.format(loop=_loop(tmp_path))
    with pytest.raises(SettingsError) as caught:
        load(environ={"VRM_STATE_DIR": state}, deploy_dir=tmp_path)
    assert str(caught.value).startswith("VRM_STATE_DIR=") and len(str(caught.value)) < 300
    code, err = _main("status", "--state-dir", state, "--deploy-dir", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and len(err) < 300, err
    assert "--state-dir" in err or "VRM_STATE_DIR" in err, err


@pytest.mark.parametrize("blank", ["", " "])
def test_an_empty_state_dir_flag_is_refused_and_nothing_is_chmodded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    tmp_path.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    code, err = _main("setup", "--state-dir", blank, "--deploy-dir", str(tmp_path))
    assert code == 2 and "--state-dir" in err and len(err.strip().splitlines()) == 1, err
    assert tmp_path.stat().st_mode & 0o7777 == 0o755
    assert not (tmp_path / ".env").exists()


def test_a_shared_folder_is_refused_as_a_state_dir_and_left_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(SettingsError, match=r"VRM_STATE_DIR=.*shared.*1777"):
        load(environ={"VRM_STATE_DIR": str(shared)}, deploy_dir=tmp_path)
    code, err = _main("setup", "--state-dir", str(shared), "--deploy-dir", str(tmp_path))
    assert code == 2 and "1777" in err, err
    assert shared.stat().st_mode & 0o7777 == 0o1777


def test_securing_never_chmods_a_folder_vrm_did_not_create(tmp_path: Path) -> None:
    """A state dir that holds anything vrm does not keep there (a project folder named as the
    state dir) is not vrm's to close; one holding only vrm's files, or nothing, is."""
    theirs = tmp_path / "project"
    theirs.mkdir()
    theirs.chmod(0o755)
    (theirs / "README").write_text("mine\n")
    nginx.secure_state_dir(theirs, None)
    assert theirs.stat().st_mode & 0o777 == 0o755
    ours = tmp_path / "state"
    ours.mkdir()
    ours.chmod(0o755)
    (ours / "journal.jsonl").write_text("")
    (ours / "logs").mkdir()
    nginx.secure_state_dir(ours, None)
    assert ours.stat().st_mode & 0o777 == 0o700
    fresh = tmp_path / "fresh"
    nginx.secure_state_dir(fresh, None)
    assert fresh.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("deploy", ["", "/tmp/" + "d" * 300, "{loop}", "/dev/null"])
def test_a_deploy_dir_the_os_cannot_name_exits_2(tmp_path: Path, deploy: str) -> None:
    deploy = deploy.format(loop=_loop(tmp_path))
    code, err = _main("journal", "--deploy-dir", deploy)
    assert code == 2 and "--deploy-dir" in err, err
    assert len(err.strip().splitlines()) == 1 and len(err) < 300, err
    if deploy.strip() and deploy != "/dev/null":
        with pytest.raises(SettingsError) as caught:
            load(environ={"VRM_DEPLOY_DIR": deploy})
        assert len(str(caught.value)) < 300


def test_vrms_hidden_files_do_not_make_its_state_dir_foreign(tmp_path: Path) -> None:
    from vrm_tui.core.paths import StateDir

    state = StateDir(tmp_path / "state")
    assert state.holds_only_vrms()  # not there yet: vrm creates it
    state.root.mkdir()
    for name in ("journal.jsonl", ".journal.jsonl.x1y2.tmp", ".migration-unguarded-7-42"):
        (state.root / name).write_text("")
    assert state.holds_only_vrms()
    (state.root / ".git").mkdir()
    assert not state.holds_only_vrms()
