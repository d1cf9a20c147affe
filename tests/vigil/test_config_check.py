"""`vigil config check` is the truth: every problem a command would meet later is reported by the check.

Each case is a settings file a user could write; the check must refuse it with the key named, in one line
per problem, and no traceback. Missing paths are warnings that name them, and do not fail the check.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook

from vigil.cli import cli
from vigil.config.checks import check_webhook_secret

GOOD = """
[[watch.sources]]
name = "cam1"
path = "{folder}"
[[targets]]
name = "van"
description = "a white delivery van"
[[alerts.channels]]
name = "ops"
kind = "webhook"
url = "https://hooks.example.com/vigil"
[[alerts.rules]]
name = "r"
targets = ["van"]
sources = ["cam1"]
channels = ["ops"]
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("VIGIL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cams").mkdir()
    return tmp_path


def check(workdir: Path, text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    (workdir / "vigil.toml").write_text(text.replace("{folder}", str(workdir / "cams")))
    return CliRunner().invoke(cli, ["config", "check"], env=env)


def test_good_settings_are_ok(workdir: Path) -> None:
    gate = (
        'path = "{folder}"\nstatic_gate = 8.5\nkeep_days = 7\nmin_free = "4.5GiB"\nurl = "rtsp://cam:554/s"'
    )
    gate += '\nusername = "viewer"\npassword_env = "CAM_PW"\nsegment_s = 60'
    result = check(workdir, GOOD.replace('path = "{folder}"', gate) + '[retention]\nmin_free = "10%"\n')
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: vigil.toml: 1 source(s), 1 target(s), 1 rule(s)")
    assert "warning" not in result.output


URL = '"https://hooks.example.com/vigil"'
RULE_END = 'channels = ["ops"]'
HOOK = 'kind = "webhook"'
DUPE = "target names must be unique, repeated: van"
BAD = [
    ('targets = ["van"]', 'targets = ["ghost"]', "alerts.rules[r].targets: no target named ghost in the"),
    (RULE_END, 'channels = ["pager"]', "alerts.rules[r].channels: no channel named pager"),
    (RULE_END, f'{RULE_END}\nhours = "25-99"', "alerts.rules.0.hours: '25-99'"),
    (RULE_END, f'{RULE_END}\ntimezone = "Mars/Olympus"', "alerts.rules.0.timezone: 'Mars/Olympus'"),
    (RULE_END, f'{RULE_END}\nmessage = "{{target.__class__}}"', "alerts.rules.0.message"),
    (URL, '"not a url"', "alerts.channels.0.url: 'not a url' is not an http:// or https:// URL"),
    (URL, '"ftp://example.com/x"', "is not an http:// or https:// URL"),
    (URL, '"file:///etc/passwd"', "is not an http:// or https:// URL"),
    (HOOK, f'{HOOK}\nsecret = "whsec_not base64!"', "alerts.channels.0.secret"),
    (HOOK, f'{HOOK}\nsecret = "whsec_"', "alerts.channels.0.secret"),
    ("[[alerts.rules]]", '[[alerts.channels]]\nname = "ops"\nkind = "log"\n[[alerts.rules]]', "ops"),
    ("[[alerts.rules]]", '[[alerts.rules]]\nname = "r"\n[[alerts.rules]]', "rule names must be unique"),
    ("[[alerts.channels]]", '[[targets]]\nname = "van"\ndescription = "a van"\n[[alerts.channels]]', DUPE),
    ('path = "{folder}"', 'path = "{folder}"\ntargets = ["nobody"]', "[cam1].targets: no target named no"),
    ('path = "{folder}"', 'path = "{folder}"\nurl = "rtsp://u:pw@cam/s"', "holds a password: put it in pass"),
    ('path = "{folder}"', 'path = "{folder}"\nurl = "ftp://cam/s"', "watch.sources.0.url: must be an rtsp"),
    ('path = "{folder}"', 'path = "{folder}"\npassword_env = "CAM_PW"', "password_*, offline_* are for a"),
    (
        'path = "{folder}"',
        'path = "{folder}"\nurl = "rtsp://c/s"\noffline_alert_s = 60',
        "offline_alert_s and",
    ),
    (
        'path = "{folder}"',
        'path = "{folder}"\nurl = "rtsp://c/s"\noffline_alert_s = 9\noffline_channels = ["pager"]',
        "watch.sources[cam1].offline_channels: no channel named pager",
    ),
    ('path = "{folder}"', 'path = "{folder}"\nurl = "rtsp://cam/s"\nsegment_s = 1', "segment_s: Input"),
    ('path = "{folder}"', 'path = "{folder}"\nmin_free = "10 parsecs"', "watch.sources.0.min_free: '10 p"),
    ('path = "{folder}"', 'path = "{folder}"\nmin_free = "100%"', "a percentage of the volume is between"),
    ('path = "{folder}"', 'path = "{folder}"\nkeep_days = 0', "watch.sources.0.keep_days: Input should be"),
    (
        'path = "{folder}"',
        'path = "{folder}"\nkeep_days = 40\n[retention]\nkeep_days = 3\nkeep_alerted_days = 30',
        "watch.sources[cam1]: keep_alerted_days (30) must be at least keep_days (40)",
    ),
    (RULE_END, f'{RULE_END}\n[retention]\nalert_channels = ["pager"]', "retention.alert_channels: no"),
    (RULE_END, f"{RULE_END}\n[retention]\nkeep_alerted_days = 3", "keep_days (unset: kept for ever)"),
    (
        'path = "{folder}"',
        'path = "{folder}"\nstatic_gate = -1',
        "watch.sources.0.static_gate: Input should be",
    ),
    (
        'path = "{folder}"',
        'path = "{folder}"\nstatic_gate = 300',
        "watch.sources.0.static_gate: Input should be",
    ),
    (
        'path = "{folder}"',
        'path = "{folder}"\nstatic_gate = "on"',
        "watch.sources.0.static_gate: Input should be",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), BAD)
def test_config_check_refuses(workdir: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    result = check(workdir, GOOD.replace(old, new, 1))
    assert result.exit_code == 2, result.output
    assert "1 invalid setting(s)" in result.output
    assert expected in result.output
    assert "Traceback" not in result.output and "For further information" not in result.output


def test_not_a_url_names_the_url(workdir: Path) -> None:
    result = check(workdir, GOOD.replace('"https://hooks.example.com/vigil"', '"not a url"'))
    assert "'not a url' is not an http:// or https:// URL with a host" in result.output


def test_environment_variable_with_an_unknown_section_is_an_error(workdir: Path) -> None:
    result = check(workdir, GOOD, env={"VIGIL_MODLE__ID": "x"})
    assert result.exit_code == 2
    assert "environment variable VIGIL_MODLE__ID: no settings section 'modle'" in result.output


def test_missing_source_folder_and_model_directory_are_warnings_that_name_them(workdir: Path) -> None:
    text = GOOD.replace('path = "{folder}"', 'path = "/mnt/not-mounted"') + '[model]\nid = "/models/absent"\n'
    result = check(workdir, text)
    assert result.exit_code == 0, result.output
    assert "warning: watch.sources[cam1].path: /mnt/not-mounted is not a directory" in result.output
    assert "warning: model.id: /models/absent looks like a directory but there is none" in result.output


def test_hub_ids_are_not_taken_for_paths(workdir: Path) -> None:
    result = check(workdir, GOOD + '[model]\nid = "Qwen/Qwen2.5-VL-7B-Instruct"\n')
    assert result.exit_code == 0 and "warning" not in result.output


def test_whsec_secrets_are_those_the_standard_webhooks_library_accepts() -> None:
    """Our check agrees with the reference implementation on what a whsec_ secret is."""
    good = "whsec_" + base64.b64encode(b"k" * 24).decode()
    assert check_webhook_secret(good) == good
    Webhook(good)  # the reference library takes it
    for bad in ("whsec_not base64!", "whsec_", "whsec_@@@@"):
        with pytest.raises(ValueError, match="whsec_"):
            check_webhook_secret(bad)
        with pytest.raises(Exception):  # noqa: B017 - the reference library refuses it too (binascii.Error)
            Webhook(bad).sign("msg_1", __import__("datetime").datetime.now(), "{}")
    assert check_webhook_secret("a plain shared secret") == "a plain shared secret"


FULL = """
[storage]
data_dir = "{folder}/../data"
[[watch.sources]]
name = "cam1"
path = "{folder}"
static_gate = 8.0
[[targets]]
name = "van"
description = "a white delivery van"
threshold = 0.6
[[alerts.channels]]
name = "ops"
kind = "webhook"
url = "https://hooks.example.com/vigil"
secret = "whsec_{secret}"
[[alerts.channels]]
name = "mail"
kind = "email"
smtp_host = "127.0.0.1"
mail_from = "vigil@example.com"
mail_to = ["ops@example.com"]
[[alerts.rules]]
name = "night-van"
targets = ["van"]
sources = ["cam*"]
days = ["mon", "fri"]
hours = "22-06"
timezone = "Europe/Amsterdam"
min_consecutive = 2
message = "{{target}} at {{source}}: {{score:.2f}}"
channels = ["ops", "mail"]
"""


def test_after_ok_no_command_refuses_the_same_settings(workdir: Path) -> None:
    """The promise of `config check`: settings it calls ok are taken by every command that reads them
    (each command applies them to the database at start, so a check it made later would refuse here)."""
    secret = base64.b64encode(b"k" * 24).decode()
    (workdir / "vigil.toml").write_text(
        FULL.replace("{folder}", str(workdir / "cams")).replace("{secret}", secret)
    )
    runner = CliRunner()
    checked = runner.invoke(cli, ["config", "check"])
    assert checked.exit_code == 0 and checked.output.startswith("ok:"), checked.output
    commands = [
        ["db", "upgrade"],
        ["config", "show"],
        ["targets", "list"],
        ["rules", "list"],
        ["alerts", "list"],
        ["status"],
        ["sql", "SELECT name, enabled FROM alert_rules"],
    ]
    for command in commands:
        result = runner.invoke(cli, command)
        assert result.exit_code == 0, (command, result.output)
        assert "error" not in result.output.lower(), (command, result.output)
    rules = runner.invoke(cli, ["sql", "--format", "csv", "SELECT name, enabled FROM alert_rules"])
    assert rules.output.splitlines()[1:] == ["night-van,true"], rules.output


def test_min_free_is_bytes_or_a_share_of_the_volume() -> None:
    from vigil.config.retention import min_free_bytes

    assert min_free_bytes("4.5GiB", 10**12) == int(4.5 * 2**30)
    assert min_free_bytes("5GB", 10**12) == 5 * 10**9
    assert min_free_bytes("1000000", 10**12) == 10**6
    assert min_free_bytes("12.5%", 8000) == 1000


def test_a_stream_sources_missing_folder_is_no_warning(workdir: Path) -> None:
    stream = 'path = "/srv/not-yet/gate"\nurl = "rtsp://cam:554/s"'
    result = check(workdir, GOOD.replace('path = "{folder}"', stream))
    assert result.exit_code == 0 and "warning" not in result.output, result.output
